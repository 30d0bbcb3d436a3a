"""The property layer: pure like the unit layer, but each test generates many inputs
(Hypothesis strategies and state machines, seeded Monte-Carlo runs, cross-checks against
a reference implementation such as scipy), so it takes seconds where a unit test takes
milliseconds. A test belongs here when it states a property over generated inputs rather
than one example; it touches no server either.
"""
