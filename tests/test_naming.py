"""The file naming convention SENDER_KIND_YYYYMMDD_SEQUENCE.xml."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cns_exchange.domain.naming import KIND_CODES, FileName, make_name, next_sequence, parse_name

DAY = date(2026, 11, 20)


@pytest.mark.parametrize("sender,kind,day,sequence,expected", [
    ("123456", "billing", DAY, 1, "123456_FAC_20261120_000001.xml"),
    ("123456", "request", date(2026, 1, 2), 42, "123456_DTP_20260102_000042.xml"),
    ("12345678", "request", DAY, 999999, "12345678_DTP_20261120_999999.xml"),
    ("CNS", "ack", DAY, 1, "CNS_ACR_20261120_000001.xml"),
    ("CNS", "answers", DAY, 2, "CNS_RTP_20261120_000002.xml"),
    ("CNS", "payment", date(2026, 11, 25), 1, "CNS_DEC_20261125_000001.xml"),
])
def test_make_and_parse(sender, kind, day, sequence, expected):
    assert make_name(sender, kind, day, sequence) == expected
    assert parse_name(expected) == FileName(sender, kind, day, sequence)


senders = st.one_of(st.just("CNS"), st.from_regex(r"[1-9][0-9]{5,7}", fullmatch=True))


@settings(max_examples=100, deadline=None, database=None)
@given(sender=senders, kind=st.sampled_from(sorted(KIND_CODES)), day=st.dates(date(1000, 1, 1), date(9999, 12, 31)),
       sequence=st.integers(1, 999999))
def test_round_trip(sender, kind, day, sequence):
    name = make_name(sender, kind, day, sequence)
    assert parse_name(name) == FileName(sender, kind, day, sequence)


@pytest.mark.parametrize("sequence", [0, -1, 1000000])
def test_sequence_out_of_range(sequence):
    with pytest.raises(ValueError):
        make_name("123456", "billing", DAY, sequence)


@pytest.mark.parametrize("name", [
    "123456_XYZ_20261120_000001.xml",     # unknown kind code
    "123456_fac_20261120_000001.xml",     # kind in lower case
    "123456_FAC_20261320_000001.xml",     # month 13
    "123456_FAC_20260230_000001.xml",     # 30 February
    "123456_FAC_20261120_00001.xml",      # 5-digit sequence
    "123456_FAC_20261120_0000001.xml",    # 7-digit sequence
    "123456_FAC_2026112_000001.xml",      # 7-digit date
    "12345_FAC_20261120_000001.xml",      # 5-digit sender
    "123456789_FAC_20261120_000001.xml",  # 9-digit sender
    "012345_FAC_20261120_000001.xml",     # leading zero
    "XYZ_ACR_20261120_000001.xml",        # unknown sender
    "123456_FAC_20261120_000001.XML",     # extension case
    "123456_FAC_20261120_000001.pdf",
    "123456_FAC_20261120_000001.xml.part",
    "123456_FAC_20261120_000001.xml\n",
    "x123456_FAC_20261120_000001.xml",
    "123456-FAC-20261120-000001.xml",
    "",
])
def test_rejects(name):
    assert parse_name(name) is None


def test_next_sequence_in_an_empty_folder(tmp_path):
    assert next_sequence(tmp_path, "123456", "billing", DAY) == 1


def test_next_sequence_follows_the_highest(tmp_path):
    for name in ["123456_FAC_20261120_000001.xml", "123456_FAC_20261120_000007.xml",
                 "123456_FAC_20261120_000003.xml"]:
        (tmp_path / name).write_text("x")
    assert next_sequence(tmp_path, "123456", "billing", DAY) == 8


def test_next_sequence_ignores_other_files(tmp_path):
    for name in ["123456_FAC_20261120_000002.xml",
                 "123456_FAC_20261121_000009.xml",      # another day
                 "123456_DTP_20261120_000009.xml",      # another kind
                 "654321_FAC_20261120_000009.xml",      # another sender
                 "1234567_FAC_20261120_000009.xml",     # a sender that starts alike
                 "123456_FAC_20261120_00000x.xml",      # not conventional
                 "123456_FAC_20261120_000009.xml.part",
                 "123456_FAC_20261120_000009.pdf"]:
        (tmp_path / name).write_text("x")
    assert next_sequence(tmp_path, "123456", "billing", DAY) == 3
    assert next_sequence(tmp_path, "123456", "request", DAY) == 10
    assert next_sequence(tmp_path, "123456", "ack", DAY) == 1


def test_next_sequence_names_a_free_file(tmp_path):
    for n in range(1, 5):
        name = make_name("123456", "request", DAY, next_sequence(tmp_path, "123456", "request", DAY))
        assert not (tmp_path / name).exists()
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir())[-1] == "123456_DTP_20261120_000004.xml"


# --- printed fee notes: named after the patient and date, safe on any file system ------------

@pytest.mark.parametrize("text, part", [
    ("Hoffmann", "Hoffmann"), ("Zoë", "Zoe"), ("Weber-Müller", "Weber-Muller"), ("Da Costa Gonçalves", "Da-Costa-Goncalves"),
    ("Œhlenschläger", "OEhlenschlager"), ("Strauß", "Strauss"), ("Ørsted", "Orsted"), ("Łukasz", "Lukasz"),
    ("../../etc/passwd", "etc-passwd"), ("a\\b:c*d?e", "a-b-c-d-e"), (" .hidden. ", "hidden"), ("x\x00y\nz", "x-y-z"),
    ("李小龍", ""), ("", ""), ("A" * 60, "A" * 40),
])
def test_file_name_part(text, part):
    from cns_exchange.domain.naming import file_name_part

    assert file_name_part(text) == part


def test_fee_note_pdf_name_is_the_patient_the_day_the_file_and_the_number():
    from cns_exchange.domain.naming import fee_note_pdf_name

    billing = FileName("123456", "billing", DAY, 1)
    assert fee_note_pdf_name(billing, 4, "Hoffmann", "Zoë", date(2026, 11, 17)) == \
        "Hoffmann_Zoe_2026-11-17_123456_FAC_20261120_000001_MH0004.pdf"
    assert fee_note_pdf_name(billing, 12, "李", "", date(2026, 11, 17)) == \
        "patient_2026-11-17_123456_FAC_20261120_000001_MH0012.pdf"
    # the same patient and day: the number tells two notes apart, and the billing file two files' notes
    same = {fee_note_pdf_name(FileName("123456", "billing", DAY, seq), n, "Schmit", "Léa", DAY)
            for seq in (1, 2) for n in (1, 2)}
    assert len(same) == 4


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_fee_note_pdf_name_is_always_one_plain_ascii_file_name(last, first):
    from cns_exchange.domain.naming import fee_note_pdf_name

    name = fee_note_pdf_name(FileName("123456", "billing", DAY, 1), 1, last, first, DAY)
    assert name.isascii() and name.endswith("_123456_FAC_20261120_000001_MH0001.pdf")
    assert all(c.isalnum() or c in "-_." for c in name) and name.count(".") == 1 and not name.startswith(("-", "_"))
    assert len(name.encode()) <= 255
