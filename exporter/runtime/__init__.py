"""The run layer: each tick hands the sources' readings to the meter and its snapshot to the exposition.

loop.py        the Runtime: one tick, hot reload of the config, the loop
plan.py        what a tick needs from a config (once per load) and each tick's targets
continuity.py  the state file: resume after a restart, save every tick, bill the downtime
filestamp.py   has the config file changed (polled once per tick)
"""
