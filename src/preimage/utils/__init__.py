"""Small shared utilities: atomic artifact I/O, image conversion, devices and dtypes, content hashes, tasks on
worker processes.

They import nothing else of preimage, so every layer above can use them.
"""
