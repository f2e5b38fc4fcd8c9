"""DuHL: the device working set, the selection policies, the host refresh and the round loop.

- :mod:`.capacity`: how a budget is split (vectors, slot table, staging, pool parts);
- :mod:`.placement`: where sparse pieces go in the pool;
- :mod:`.pool_writes`: writing the incoming coordinates into the pool;
- :mod:`.working_set`: the resident set on the device and the kernel launches on it;
- :mod:`.policies`: which coordinates are resident each round (duhl, sequential, random, full);
- :mod:`.refresh`: unit A, the host thread that refreshes the gap memory;
- :mod:`.solver`: the round loop and its certificate.
"""
