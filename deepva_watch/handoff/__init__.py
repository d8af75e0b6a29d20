"""Handing a finished file on: the actions a folder runs once a file's results are written (``on_done``) or once it
failed for good (``on_failed``) — move it and its sidecars, run a command, POST an event — and the event document they
and the ``/events`` feed share. The ``act`` stage runs them, one committed step each."""
