"""Wireshark support: the Lua dissector generated from the message catalogue."""
