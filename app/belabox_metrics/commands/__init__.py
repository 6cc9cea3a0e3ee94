"""The command line: argument parsing, dispatch, and one module per subcommand.

Owns: cli (parser, dispatch), and run, check_config, collect, devices, diagnose, queue.
May import: everything below it. Only commands/ (and __main__) import commands/.
"""
