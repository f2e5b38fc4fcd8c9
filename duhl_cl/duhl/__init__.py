"""DuHL: the device working set, the selection policies, the host refresh and the round loop.

- :mod:`.capacity`: how a budget is split (vectors, slot table, staging, pool parts);
- :mod:`.placement`: where sparse pieces go in the pool;
- :mod:`.pool_writes`: writing the incoming coordinates into the pool;
- :mod:`.working_set`: the resident set on the device (slots, residency, transfers);
- :mod:`.launches`: the pass and gap launches on the resident set;
- :mod:`.policies`: which coordinates are resident each round (duhl, sequential, random, full);
- :mod:`.refresh`: unit A, the host thread that refreshes the gap memory;
- :mod:`.certificate`: the shared vector, each coordinate's u, the float64 certificate;
- :mod:`.local_solver`: one device's state and its round (the seam for a distributed driver);
- :mod:`.rounds`: the rounds of a fit (when to certify, the float32 floor and the switch to
  float64, the stop's record);
- :mod:`.solver`: the driver of one device's fit (its result, the warning when it stops
  short);
- :mod:`.path`: a sequence of penalties (a regularization path) in one device session.
"""
