"""cnsx: electronic exchange between a dietician practice and the CNS (Luxembourg).

The package is laid out along the data flow, one sub-package per stage:

    domain/       the domain's words
      identifiers   matricule, provider, prescriber, pathology and act codes
      nomenclature  dated tariff tables, pricing
      tariffs       the table in force on a date; a checked new table written (cnsx tariffs)
      treatment     treatment-sequence state (order, counts, one consultation a day), used by the rules
      model         the records of the exchange (amounts in cents)
      naming        the file naming convention
      data/         bundled codes, convention figures and tariff tables (JSON)
    rows/         the practice's own files
      decoding      bytes -> text: the encoding given or detected (UTF-8, else Windows-1252)
      reading       CSV / JSON / NDJSON rows -> values by cnsx's column names (with row locations)
      records       rows -> typed records: requests and sessions, their values read and checked
      csvout        cnsx's CSV outputs, formula cells made harmless
    documents/    the XML documents
      safe          the hardened XML parser settings
      read          XML documents -> records (streaming); where lxml's schema pass finds errors
      write         records -> XML documents
      schemas       versioned XSD sets (bundled or dropped in by the user)
      verdict       libxml2's tree-less XSD verdict, in a thread (public API, self-checked, off if it answers wrong)
    validation/   the rules
      rules         the one rule engine: every business rule, called by build and validate alike
      validate      XSD + business rules -> list of issues; fails closed (cnsx validate)
    billing/      what is sent
      build         cnsx build-request / build-invoice
      notes         session rows -> checked, priced fee notes, in bounded memory
      spill         records past a memory budget kept sorted in an anonymous temporary file
    transport/    the CNS server
      sftp, local   the two transports (paramiko; a local folder)
      upload        cnsx upload
      fetch         cnsx fetch
      nightly       fetch + import, for cron (cnsx nightly)
      sandbox       the CNS's stand-in (cnsx sandbox): deposits read, state kept, return files written
      sandbox_judge the stand-in's decisions: acceptance, certificates or refusals, payments or disputes
    store/        the practice database
      database      schema, migrations and the queries shared by import, status and build
      importing     return files read, archived or quarantined (cnsx import)
      matching      a read document -> database rows, matched with what it answers; counters, corrections
      inbox         what cnsx import takes: files, fetch's list or a document on stdin (streamed), the inbox
      status        the reports (cnsx status)
      convention    final reports due (cnsx report-sent)
      export        the accountant's export (cnsx export)
      lock          one run at a time per database
    pdf/          PDFs
      prescriptions the prescription a request carries, checked (pypdf); scans converted (img2pdf)
      layout        the one page-layout engine: documents laid out as data (pages of bands), then drawn
      feenote       the patient's fee note
      summary       the summary statement of a billing file
      report        the status report of the practice database (cnsx status --pdf)
      printing      billing file -> fee notes and summary (cnsx print); the status report written
    cli/          the click commands, one module per command group; each resolves its options,
                  calls one core function and prints the result
      __init__      the root group, global options, lazy registration, errors -> exit codes
      context       the settings, tables, database and server the options name; the help, translated when shown
      output        shared writers: JSON, JSON lines, output-format options, the summary line
      build, validate, printing (print), upload, fetch (fetch, nightly, hostkey), config,
      doctor, imports (import), status (status, certificates, report-sent), export, tariffs,
      sandbox       the commands
    doctor        the checks of cnsx doctor
    errors, issues, config, console, fsutil, clock   shared by every stage
"""

__version__ = "0.1.0"
