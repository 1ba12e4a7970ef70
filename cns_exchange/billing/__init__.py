"""Building the files sent to the CNS: build-request and build-invoice (build).

Kept light: importing the package loads none of its modules.
"""
