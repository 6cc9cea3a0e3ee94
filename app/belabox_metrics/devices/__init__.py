"""Devices: udev discovery (the only pyudev importer), the sysfs fallback scan, classification
of disks, uplinks and modems, and the registry collectors ask instead of globbing.

Owns: model (device records, registry), classify and disks (pure), discovery (pyudev), sysfsscan.
May import: config, platform, samples, redact.
"""
