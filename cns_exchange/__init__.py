"""cnsx: electronic exchange between a dietician practice and the CNS (Luxembourg).

The package is laid out along the data flow:

    records      CSV / JSON / NDJSON rows  -> typed records (with row locations)
    pdf          prescription PDFs checked (pypdf), scans converted (img2pdf); PDFs drawn (reportlab)
    identifiers  matricule, provider, prescriber, pathology and act codes
    nomenclature dated tariff tables, pricing
    tariffs      the table in force on a date; a checked new table written (cnsx tariffs)
    rules        the one rule engine: every business rule, called by build and validate alike
    treatment    treatment-sequence state (order, counts, one consultation a day), used by rules
    naming       the file naming convention
    schemaset    versioned XSD sets (bundled or dropped in by the user)
    xmlsafe      the hardened XML parser settings
    xmlwrite     records -> XML documents
    xmlread      XML documents -> records (streaming)
    xsdstream    libxml2's tree-less XSD verdict (public API, self-checked, off if it answers wrong)
    validate     XSD + business rules -> list of issues; fails closed
    build        build-request / build-invoice orchestration
    printing     billing file -> printed fee notes and summary statement (cnsx print)
    fsutil       writes that cannot half-happen
    console      human output on stderr (rich)
    cli          the click commands
"""

__version__ = "0.1.0"
