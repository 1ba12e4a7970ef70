"""The practice database: schema and shared queries (database), import of return files (importing),
reports (status, convention, export), the nightly job (nightly) and the one-run lock (lock).

Kept light: importing the package loads none of its modules.
"""
