"""stub"""
CASES = ()
