"""PDFs: prescriptions checked and scans converted (prescriptions); documents laid out as data and
drawn by one engine (layout): the fee note (feenote), the summary statement (summary), the
status report (report); cnsx print (printing).

Kept light: importing the package loads none of its modules.
"""
