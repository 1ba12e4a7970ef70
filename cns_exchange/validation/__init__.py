"""Validation: the one rule engine (rules) and the validator that runs the schema and the rules
over a document and fails closed (validate).

Kept light: importing the package loads none of its modules.
"""
