"""Exit statuses shared by every ``crescent`` command."""

#: The command did what was asked and every check passed.
EXIT_OK = 0
#: A check failed (an unsafe exam, a conformance violation, an invariant broken).
EXIT_FAILED = 1
#: Bad input: a file that cannot be read, a port that cannot be opened, an option out of range.
EXIT_INPUT = 2
