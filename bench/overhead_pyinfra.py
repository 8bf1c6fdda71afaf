# The same 20 privileged commands as overhead/main.yaml, as pyinfra operations.
from pyinfra.operations import server

for i in range(1, 21):
    server.shell(name=f"hostname file {i}", commands=["test -f /etc/hostname"], _sudo=True)
