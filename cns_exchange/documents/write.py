"""Records -> XML documents of schema sets v1 and v2 (v1 with DateOrdonnance in a fee note).

The documents are written as text, one element per line, in a single pass: a billing file of
200,000 sessions goes out at several hundred thousand elements per second, where building
lxml elements (or ``etree.xmlfile`` writes) per session costs several times more (measured
in benchmarks/bench_foundation.py). Only names and references can carry characters that need
escaping; every other value is a code, a number or a date checked before it gets here, and
every document is validated against its XSD before it is published.

Header totals are computed here from the items, so a document written by cnsx cannot
disagree with itself.
"""

from __future__ import annotations

from typing import IO, Iterable, Sequence

from cns_exchange.domain.model import (
    Acknowledgement,
    Answer,
    CertificateRequest,
    FeeNote,
    FileRef,
    Header,
    PaymentLine,
    amount,
)

_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
_TREATMENT_XML = {"initial": "initial", "extension": "prolongation"}
_CHUNK = 1 << 16


def escape(text: str) -> str:
    """Escape a text node (a carriage return too, which a parser would otherwise fold away)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    return text


class TextOut:
    """Buffers text and writes it as UTF-8 in large chunks."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > _CHUNK:
            self.flush()

    def flush(self) -> None:
        self.stream.write("".join(self.parts).encode("utf-8"))
        self.parts.clear()
        self.size = 0


def _fields(pairs: Sequence[tuple[str, str]], indent: str = "    ") -> str:
    return "".join(f"{indent}<{tag}>{value}</{tag}>\n" for tag, value in pairs)


def _header(header: Header, extra: str = "") -> str:
    """Return the EnTete element: the common fields, then the kind's own (``extra``)."""
    return (
        "  <EnTete>\n"
        f"    <CodePrestataire>{header.provider}</CodePrestataire>\n"
        f"    <DateHeureCreation>{header.created.isoformat(timespec='seconds')}</DateHeureCreation>\n"
        f"    <NumeroSequence>{header.sequence}</NumeroSequence>\n"
        f"    <VersionSchema>{header.version}</VersionSchema>\n"
        f"{extra}  </EnTete>\n"
    )


def _patient(matricule: str, last: str, first: str, indent: str) -> str:
    text = f"{indent}<Patient>\n{indent}  <Matricule>{matricule}</Matricule>\n"
    if last:
        text += f"{indent}  <Nom>{escape(last)}</Nom>\n"
    if first:
        text += f"{indent}  <Prenom>{escape(first)}</Prenom>\n"
    return text + f"{indent}</Patient>\n"


def _acts(tag: str, acts: Iterable[tuple[str, int]], indent: str) -> str:
    text = f"{indent}<{tag}>\n"
    for act, count in acts:
        text += f"{indent}  <Acte>\n{indent}    <CodeActe>{act}</CodeActe>\n{indent}    <Nombre>{count}</Nombre>\n{indent}  </Acte>\n"
    return text + f"{indent}</{tag}>\n"


def _file_ref(tag: str, ref: FileRef, indent: str) -> str:
    return (f"{indent}<{tag}>\n{indent}  <NomFichier>{escape(ref.name)}</NomFichier>\n"
            f"{indent}  <Sha256>{ref.sha256}</Sha256>\n{indent}</{tag}>\n")


def _anomalies(tag: str, anomalies: Iterable, indent: str) -> str:
    text = f"{indent}<{tag}>\n"
    for a in anomalies:
        text += f"{indent}  <Anomalie>\n{indent}    <Code>{a.code}</Code>\n{indent}    <Libelle>{escape(a.label)}</Libelle>\n"
        if a.element:
            text += f"{indent}    <ElementConcerne>{escape(a.element)}</ElementConcerne>\n"
        text += f"{indent}  </Anomalie>\n"
    return text + f"{indent}</{tag}>\n"


def write_request_file(stream: IO[bytes], header: Header, requests: Sequence[CertificateRequest]) -> None:
    """Write a request file (DemandesTitrePriseEnCharge) for ``requests``."""
    out = TextOut(stream)
    out.add(_XML_DECL + "<DemandesTitrePriseEnCharge>\n")
    out.add(_header(header, _fields([("NombreDemandes", str(len(requests)))])))
    for r in requests:
        text = (f"  <Demande>\n    <ReferenceDemande>{r.request_ref}</ReferenceDemande>\n"
                + _patient(r.matricule, r.last_name, r.first_name, "    ")
                + f"    <CodeMedecinPrescripteur>{r.prescriber_code}</CodeMedecinPrescripteur>\n"
                f"    <DateOrdonnance>{r.prescription_date.isoformat()}</DateOrdonnance>\n    <CodesPathologie>\n")
        for code in r.pathology_codes:
            text += f"      <CodePathologie>{code}</CodePathologie>\n"
        text += (f"    </CodesPathologie>\n    <TypeTraitement>{_TREATMENT_XML[r.treatment]}</TypeTraitement>\n"
                 + _acts("ActesDemandes", r.acts, "    ")
                 + _file_ref("Ordonnance", FileRef(r.pdf_name, r.pdf_sha256), "    ")
                 + "  </Demande>\n")
        out.add(text)
    out.add("</DemandesTitrePriseEnCharge>\n")
    out.flush()


def billing_totals(notes: Iterable[FeeNote]) -> tuple[int, int, int, int, int]:
    """Return (fee notes, sessions, gross, patient share, CNS share) over ``notes``."""
    count = sessions = gross = share = cns = 0
    for note in notes:
        count += 1
        sessions += len(note.sessions)
        for s in note.sessions:
            gross += s.gross
            share += s.patient_share
            cns += s.cns_share
    return count, sessions, gross, share, cns


def billing_start(header: Header, count: int, sessions: int, gross: int, share: int, cns: int) -> str:
    """Return a billing file's text up to the end of its header, with these control totals."""
    return _XML_DECL + "<FichierFacturation>\n" + _header(header, _fields([
        ("NombreMemoires", str(count)), ("NombreSeances", str(sessions)),
        ("TotalMontantBrut", amount(gross)), ("TotalParticipationPersonnelle", amount(share)),
        ("TotalPartStatutaire", amount(cns)),
    ]))


def fee_note_start(number: int, certificate: str, matricule: str, last: str = "", first: str = "",
                   prescribed: str = "") -> str:
    """Return a fee note's text up to its first session; ``prescribed`` (YYYY-MM-DD) is the
    date of the certificate's prescription, written as DateOrdonnance (schema v2) when given."""
    text = (f"  <MemoireHonoraires>\n    <NumeroMemoire>{number}</NumeroMemoire>\n"
            f"    <NumeroTitre>{certificate}</NumeroTitre>\n" + _patient(matricule, last, first, "    "))
    return text + f"    <DateOrdonnance>{prescribed}</DateOrdonnance>\n" if prescribed else text


def session_start(line_no: int, day: str) -> str:
    """Return a session's text up to its date (``day``: YYYY-MM-DD)."""
    return f"    <Seance>\n      <NumeroLigne>{line_no}</NumeroLigne>\n      <DateSeance>{day}</DateSeance>\n"


def session_rest(act: str, provider: str, gross: int, share: int, cns: int) -> str:
    """Return the rest of a session's text: act, executing provider, amounts (cents)."""
    return (f"      <CodeActe>{act}</CodeActe>\n"
            f"      <PrestataireExecutant>{provider}</PrestataireExecutant>\n"
            f"      <MontantBrut>{amount(gross)}</MontantBrut>\n"
            f"      <ParticipationPersonnelle>{amount(share)}</ParticipationPersonnelle>\n"
            f"      <PartStatutaire>{amount(cns)}</PartStatutaire>\n"
            "    </Seance>\n")


FEE_NOTE_END = "  </MemoireHonoraires>\n"
BILLING_END = "</FichierFacturation>\n"


def write_billing_file(stream: IO[bytes], header: Header, notes: Iterable[FeeNote],
                       totals: tuple[int, int, int, int, int] | None = None) -> None:
    """Write a billing file (FichierFacturation) whose header totals are the notes' sums. A
    note's prescription date is written (DateOrdonnance) when it has one: schema v2 only.

    ``totals`` (count, sessions, gross, patient share, CNS share) when the caller has them:
    ``notes`` may then be made one at a time as they are written; else ``notes`` is read twice.
    """
    out = TextOut(stream)
    out.add(billing_start(header, *(totals if totals is not None else billing_totals(notes))))
    add = out.add
    for note in notes:
        prescribed = note.prescription_date.isoformat() if note.prescription_date is not None else ""
        parts = [fee_note_start(note.number, note.certificate_number, note.matricule, note.last_name, note.first_name,
                                prescribed)]
        for s in note.sessions:
            parts.append(session_start(s.line_no, s.session_date.isoformat()))
            parts.append(session_rest(s.act_code, s.executing_provider, s.gross, s.patient_share, s.cns_share))
        parts.append(FEE_NOTE_END)
        add("".join(parts))
    out.add(BILLING_END)
    out.flush()


def write_acknowledgement(stream: IO[bytes], header: Header, ack: Acknowledgement) -> None:
    """Write an acknowledgement of receipt (AccuseReception)."""
    out = TextOut(stream)
    out.add(_XML_DECL + "<AccuseReception>\n")
    out.add(_header(header))
    out.add(_file_ref("FichierAccuse", FileRef(ack.file_name, ack.file_sha256), "  ")
            + f"  <DateHeureReception>{ack.received_at.isoformat(timespec='seconds')}</DateHeureReception>\n"
            + f"  <Statut>{'accepte' if ack.accepted else 'rejete'}</Statut>\n")
    if ack.anomalies:
        out.add(_anomalies("Anomalies", ack.anomalies, "  "))
    out.add("</AccuseReception>\n")
    out.flush()


def write_answers(stream: IO[bytes], header: Header, request_file: FileRef, answers: Sequence[Answer]) -> None:
    """Write the answers to a request file (ReponsesTitrePriseEnCharge)."""
    out = TextOut(stream)
    out.add(_XML_DECL + "<ReponsesTitrePriseEnCharge>\n")
    out.add(_header(header, _file_ref("FichierDemandes", request_file, "    ")
                    + _fields([("NombreReponses", str(len(answers)))])))
    for a in answers:
        text = f"  <Reponse>\n    <ReferenceDemande>{a.request_ref}</ReferenceDemande>\n    <Matricule>{a.matricule}</Matricule>\n"
        if a.certificate is not None:
            c = a.certificate
            text += (f"    <Titre>\n      <NumeroTitre>{c.number}</NumeroTitre>\n"
                     f"      <DateDebutValidite>{c.valid_from.isoformat()}</DateDebutValidite>\n"
                     f"      <DateFinValidite>{c.valid_to.isoformat()}</DateFinValidite>\n"
                     + _acts("ActesAutorises", c.acts, "      ") + "    </Titre>\n")
        else:
            text += _anomalies("Refus", a.refusal, "    ")
        out.add(text + "  </Reponse>\n")
    out.add("</ReponsesTitrePriseEnCharge>\n")
    out.flush()


def payment_totals(lines: Iterable[PaymentLine]) -> tuple[int, int, int]:
    """Return (line count, billed, accepted) over ``lines``."""
    count = billed = accepted = 0
    for line in lines:
        count += 1
        billed += line.billed
        accepted += line.accepted
    return count, billed, accepted


def write_payment_statement(stream: IO[bytes], header: Header, billing_file: FileRef, paid_on, reference: str,
                            lines: Sequence[PaymentLine]) -> None:
    """Write a payment statement (JustificatifPaiement) whose totals are the lines' sums."""
    count, billed, accepted = payment_totals(lines)
    out = TextOut(stream)
    out.add(_XML_DECL + "<JustificatifPaiement>\n")
    out.add(_header(header, _file_ref("FichierFacture", billing_file, "    ") + _fields([
        ("DatePaiement", paid_on.isoformat()), ("ReferencePaiement", reference), ("NombreLignes", str(count)),
        ("TotalFacture", amount(billed)), ("TotalAccepte", amount(accepted)), ("TotalConteste", amount(billed - accepted)),
    ])))
    for line in lines:
        text = (f"  <Ligne>\n    <NumeroMemoire>{line.fee_note}</NumeroMemoire>\n    <NumeroLigne>{line.line_no}</NumeroLigne>\n"
                f"    <NumeroTitre>{line.certificate_number}</NumeroTitre>\n    <MontantFacture>{amount(line.billed)}</MontantFacture>\n")
        if line.reason_code:
            text += (f"    <Contestation>\n      <CodeMotif>{line.reason_code}</CodeMotif>\n"
                     f"      <Libelle>{escape(line.reason_label)}</Libelle>\n"
                     f"      <MontantAccepte>{amount(line.accepted)}</MontantAccepte>\n    </Contestation>\n")
        else:
            text += f"    <MontantAccepte>{amount(line.accepted)}</MontantAccepte>\n"
        out.add(text + "  </Ligne>\n")
    out.add("</JustificatifPaiement>\n")
    out.flush()

