"""The stream side of a BELABOX: belaUI, belacoder and srtla_send, their files, bonded
links and addresses, and an SRT receiver's statistics.

Owns: collector, procs, belaui_files, ifaddrs, srt, srtstats (pure parsers).
May import: collectors, platform, samples.
"""
