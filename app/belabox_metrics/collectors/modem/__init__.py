"""Cellular modems: radio data from ModemManager (the only code that talks to it) joined
to the modems udev discovery found.

Owns: collector (mmcli calls), parse (pure mmcli -J parsers), matching (ModemManager to udev),
schedule (when mmcli runs), series (the samples of one modem).
May import: collectors, devices (records), platform, samples.
"""
