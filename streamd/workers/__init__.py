"""Worker processes on one machine (issue 18): ``streamd serve --workers N``.

- :mod:`.channel`: messages (JSON, with file descriptors) between the parent and each worker;
- :mod:`.ownership`: who publishes which path, decided in one place (the parent here; a
  Redis-backed table satisfies the same :class:`~.ownership.PathOwners` for a cluster);
- :mod:`.multicast_table`, :mod:`.multicast_link`, :mod:`.multicast_view`: one multicast group
  per path for the whole server (the parent allocates it, one worker sends it);
- :mod:`.supervisor`: the parent: starts, restarts and stops the workers, answers their questions;
- :mod:`.worker`: what a worker adds to an ordinary server (finding sessions, tunnels and live
  paths on its siblings, handing sockets over, the whole server's view for the HTTP side).
"""
