"""The practice's rows: CSV / JSON / NDJSON decoded (decoding) and read (reading) into typed
records (records), and cnsx's CSV outputs written safely (csvout).

Kept light: importing the package loads none of its modules.
"""
