# A console socket peer (what containerd/podman do): receive the pty master, optionally type
# into it, print everything the container writes until the pty closes.
import array, os, socket, sys
path, typed = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ''
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path); srv.listen(1)
print('listening', flush=True)
conn, _ = srv.accept()
msg, fds, flags, addr = socket.recv_fds(conn, 1024, 1)
master = fds[0]
sys.stderr.write('got %s\n' % msg.decode())
if typed: os.write(master, typed.encode())
out = b''
while True:
    try:
        d = os.read(master, 4096)
    except OSError:
        break
    if not d: break
    out += d
sys.stdout.write(out.decode(errors='replace')); sys.stdout.flush()
