#!/usr/bin/env python3
"""Benchmark of the PDF half: cnsx print summary / fee-notes on a billing file of N fee notes.

Generates its data (a CSV of N certificates x 4 sessions with accented names, built into a
billing file by cnsx build-invoice), then prints:

- the wall time of ``cnsx print summary`` and ``cnsx print fee-notes`` as subprocesses
  (start-up, validation of the billing file, reading, drawing, writing), and their peak
  memory (ru_maxrss of the child);
- the time of the drawing alone (pdf.summary.write_summary in this process, the file already read),
  the figure the 5-second target of issue 5 is about.

Prints figures; asserts nothing.

    python benchmarks/bench_pdf.py [--notes 500] [--workdir benchmarks/data/pdf]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from stdnum import luhn, verhoeff

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CREATED = "2026-11-20T09:00:00+01:00"
LAST = ["Schmit", "Weber-Müller", "Hoffmann", "Kieffer", "Da Costa Gonçalves", "Lefèvre", "Thill", "Wagner", "Œhlenschläger"]
FIRST = ["Léa", "François", "Zoë", "Noah", "Chloé", "Loïc", "Anaïs", "Jérôme", "Maëlle"]


def matricule(rng: random.Random) -> str:
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 80))
    base = f"{born:%Y%m%d}{rng.randrange(1000):03d}"
    return base + luhn.calc_check_digit(base) + verhoeff.calc_check_digit(base)


def make_csv(path: Path, notes: int) -> int:
    rng = random.Random(7)
    sessions = 0
    seen: set[str] = set()
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["certificate_number", "matricule", "session_date", "act_code", "last_name", "first_name"])
        for n in range(1, notes + 1):
            m = matricule(rng)
            while m in seen:
                m = matricule(rng)
            seen.add(m)
            last, first = rng.choice(LAST), rng.choice(FIRST)
            start = date(2026, 1, 5) + timedelta(days=rng.randrange(250))
            for k, act in enumerate(("ZD11", "ZD12", "ZD13", "ZD13")):
                w.writerow([f"TPC-2026-{n:06d}", m, (start + timedelta(days=7 * k)).isoformat(), act, last, first])
                sessions += 1
    return sessions


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS MB of that child). Exits if it fails."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr.decode()}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=500)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data" / "pdf")
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    (work / "config").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNSX_") and k != "SOURCE_DATE_EPOCH"}
    env["CNSX_CONFIG_DIR"] = str(work / "config")
    cnsx = [sys.executable, "-m", "cns_exchange"]
    sessions = make_csv(work / "sessions.csv", args.notes)
    billing = work / "billing.xml"
    run(cnsx + ["-q", "build-invoice", str(work / "sessions.csv"), "--provider", "123456", "--created", CREATED,
                "-o", str(billing)], env)
    print(f"billing file: {args.notes} fee notes, {sessions} sessions, {billing.stat().st_size / 1024:.0f} KiB")

    summary = work / "summary.pdf"
    wall, rss = run(cnsx + ["-q", "print", "summary", str(billing), "-o", str(summary), "--created", CREATED], env)
    print(f"cnsx print summary:   {wall:6.2f} s wall, {rss:5.0f} MB peak  -> {summary.stat().st_size / 1024:.0f} KiB")

    from pypdf import PdfReader

    print(f"                      {len(PdfReader(summary).pages)} pages")
    notes_dir = work / "notes"
    wall, rss = run(cnsx + ["-q", "print", "fee-notes", str(billing), "-o", str(notes_dir), "--created", CREATED], env)
    files = list(notes_dir.iterdir())
    print(f"cnsx print fee-notes: {wall:6.2f} s wall, {rss:5.0f} MB peak  -> {len(files)} PDFs,"
          f" {sum(f.stat().st_size for f in files) / len(files) / 1024:.0f} KiB each")

    # The drawing alone, in this process: the fee notes already read, fonts already loaded.
    from cns_exchange.domain.nomenclature import load_codes
    from cns_exchange.pdf.feenote import Source, write_fee_note
    from cns_exchange.pdf.summary import write_summary
    from cns_exchange.documents.read import read_document

    with open(billing, "rb") as f:
        items = list(read_document(f, "billing", "FichierFacturation"))
    header, notes = items[0].record, [i.record for i in items[1:]]
    labels = {act: spec["label"] for act, spec in load_codes().acts.items()}
    source = Source(billing.name, "0" * 64, header, datetime.fromisoformat(CREATED), labels, True)
    write_summary(io.BytesIO(), notes[:1], source)  # load the fonts
    t = time.perf_counter()
    write_summary(io.BytesIO(), notes, source)
    drawn = time.perf_counter() - t
    t = time.perf_counter()
    for note in notes:
        write_fee_note(io.BytesIO(), note, source)
    each = (time.perf_counter() - t) / len(notes)
    print(f"drawing alone:        summary of {len(notes)} fee notes {drawn:.3f} s; one fee note {each * 1000:.1f} ms")


if __name__ == "__main__":
    main()
