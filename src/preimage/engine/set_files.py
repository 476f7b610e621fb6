"""The files of a stored invariant set, named once for the code that writes sets and the code that reads them.

A light module (no torch or diffusers), so reading a set's tables costs a job no model-library imports.
"""

SUMMARY_FILE = "summary.parquet"  # one row: acceptance, speed, diversity; written last, it marks a set complete
MEMBERS_FILE = "members.parquet"  # one row per member, with its image's path under the set folder
SOURCE_FILE = "source.png"
