"""The practice database: schema and shared queries (database), import of return files (importing:
reading them, archive and errors folder; matching: their records into the database, matched with what
they answer), reports (status, convention, export), the nightly job (nightly) and the one-run lock (lock).

Kept light: importing the package loads none of its modules.
"""
