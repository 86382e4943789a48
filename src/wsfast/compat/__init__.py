"""Drop-in replacements for other packages' APIs, on wsfast's codec.

* :mod:`wsfast.compat.wsaccel`: wsaccel's XOR maskers and UTF-8 validator.
"""
