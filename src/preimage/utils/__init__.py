"""Small shared utilities: atomic artifact I/O, image conversion, devices and dtypes, content hashes.

They import nothing else of preimage, so every layer above can use them.
"""
