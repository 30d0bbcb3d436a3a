"""The chaos layer: fault tests. A service process is `kill -9`ed mid-work, a connection
is cut at commit, a server is away or a handler stalls, and the test checks that nothing
is lost, done twice or left stuck. A test belongs here when injecting the fault is its
subject; the same component's normal behaviour is tested in tests/integration.
"""
