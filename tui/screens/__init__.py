"""Modal screens: help (every key), the search prompt and the filter form."""
