"""PDFs: prescriptions checked and scans converted, documents drawn (pages); cnsx print (printing).

Kept light: importing the package loads none of its modules.
"""
