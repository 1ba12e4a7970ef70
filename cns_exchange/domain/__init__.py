"""The domain's words: identifiers, the nomenclature and its tariff tables, treatment rules' state,
the records of the exchange (model), the file naming convention, and the bundled data.

Kept light: importing the package loads none of its modules.
"""
