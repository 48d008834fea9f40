"""Cost of the usage spool on the event loop: encode + one write per group (fsync runs on the spool thread).

Run: .venv/bin/python bench/spool_cost.py
"""
import time, tempfile
from aigateway.billing.recorder import UsageEvent
from aigateway.billing.spool import Spool
d = tempfile.mkdtemp()
s = Spool(d, UsageEvent, key=lambda e: e.id); s.open()
for group in (30, 500):
    evs = [UsageEvent(id=f"req_{i:024d}", customer_id=1, api_key_id=2, model="llama-3.1-70b", endpoint="chat",
           status=200, provider="p", upstream_model="m", input_tokens=100, output_tokens=200, cost=1234,
           price_version_id=3) for i in range(group)]
    best = min(_t for _t in (
        (lambda t0: (s.append(evs), s.committed(group), time.perf_counter() - t0)[-1])(time.perf_counter())
        for _ in range(300)))
    print(f"group of {group}: best {best*1e6:.0f} us per group on the loop, {best/group*1e6:.1f} us per event")
s.close()
