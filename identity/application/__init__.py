"""Use cases over abstract ports. No framework imports."""
