"""The lab: scenario labs, load generators, real-client drivers, the Kea driver and the
demo. Not part of the product and not shipped: tests, benchmarks and `make demo` use
it from the checkout (scripts/setup.sh puts the checkout on the venv's path).

Fixtures that any test or tool needs (namespaces, config trees, a daemon's runtime
files, BPF_PROG_TEST_RUN, the request builder, the fake clock and the fake sync peer)
stay in appliance/testing, beside the code they exercise.
"""
