"""The host the agent runs on, as small adapters that import nothing else of the project.

Owns: files (kernel pseudo-files below an injected root), board (board detection and profiles),
lock, notify (sd_notify), journal and kmsg (kernel log), clock (trust and skew), token_file,
device_id, boundedhttp (deadline-bounded HTTP), recorded (live kernel or recorded tree), logsetup.
May import: the standard library and third-party libraries only.
"""
