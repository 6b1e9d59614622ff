"""Alarms: IXON-style triggers on variable values. Pure: values and time in, transitions out.

``formula`` compiles IXON's postfix formulas; ``engine`` holds the rules (conditions,
delays, deadband, flapping control), each alarm's state machine and the engine that
advances them per poll.
"""
