"""The XML documents of the exchange: the hardened parser settings (safe), reading (read) and writing
(write), the versioned schema sets (schemas) and libxml2's tree-less XSD verdict, given in a thread
(verdict).

Kept light: importing the package loads none of its modules.
"""
