#!/usr/bin/env python3
"""A libnfs client driven line by line, for the NFS integration tests.

Usage: nfs_client.py URL   (e.g. nfs://127.0.0.1/data?nfsport=N&mountport=N&version=3)

Mounts the URL's export with libnfs (the C library, through ctypes), then reads one command per
line from stdin and answers each with one line: "ok [result]" or "err <errno> <message>".
Open files stay open across commands, so a test can keep a file handle across a server restart.

Commands: mkdir P | rmdir P | unlink P | rename A B | link A B | symlink TARGET P | readlink P |
stat P | chmod P MODE(octal) | chown P UID GID | truncate P SIZE | write P TEXT | cat P |
list P | count P | create_many DIR PREFIX FIRST COUNT | open P | pread FH OFFSET LEN | fstat FH |
close FH |
statvfs P | quit
"""

import ctypes
import ctypes.util
import os
import sys

lib = ctypes.CDLL(ctypes.util.find_library("nfs") or "libnfs.so.13", use_errno=True)


class Url(ctypes.Structure):
    _fields_ = [("server", ctypes.c_char_p), ("path", ctypes.c_char_p), ("file", ctypes.c_char_p)]


class Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks",
        "atime", "mtime", "ctime", "atime_nsec", "mtime_nsec", "ctime_nsec", "used")]


class StatVfs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree", "favail", "fsid", "flag",
        "namemax")]


class Timeval(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long)]


class Dirent(ctypes.Structure):
    pass


Dirent._fields_ = [("next", ctypes.POINTER(Dirent)), ("name", ctypes.c_char_p), ("inode", ctypes.c_uint64)]

P = ctypes.c_void_p
lib.nfs_init_context.restype = P
lib.nfs_parse_url_dir.restype = ctypes.POINTER(Url)
lib.nfs_parse_url_dir.argtypes = [P, ctypes.c_char_p]
lib.nfs_get_error.restype = ctypes.c_char_p
lib.nfs_get_error.argtypes = [P]
lib.nfs_readdir.restype = ctypes.POINTER(Dirent)
lib.nfs_readdir.argtypes = [P, P]
lib.nfs_pread.argtypes = [P, P, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p]
lib.nfs_pwrite.argtypes = [P, P, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p]
lib.nfs_truncate.argtypes = [P, ctypes.c_char_p, ctypes.c_uint64]
for name in ("nfs_mkdir", "nfs_rmdir", "nfs_unlink", "nfs_readlink", "nfs_stat64", "nfs_chmod",
             "nfs_chown", "nfs_open", "nfs_creat", "nfs_opendir", "nfs_statvfs64", "nfs_close",
             "nfs_closedir", "nfs_fstat64", "nfs_rename", "nfs_link", "nfs_symlink", "nfs_mount"):
    getattr(lib, name).restype = ctypes.c_int if name != "nfs_closedir" else None

nfs = lib.nfs_init_context()
url = lib.nfs_parse_url_dir(P(nfs), sys.argv[1].encode())
if not url:
    print("err 22 bad url: " + lib.nfs_get_error(P(nfs)).decode(), flush=True)
    sys.exit(1)
lib.nfs_set_timeout(P(nfs), 20000)
status = lib.nfs_mount(P(nfs), url.contents.server, url.contents.path)
if status != 0:
    print(f"err {-status} mount: {lib.nfs_get_error(P(nfs)).decode()}", flush=True)
    sys.exit(1)
print("ok mounted", flush=True)

handles = {}


def check(status):
    if status < 0:
        raise OSError(-status, lib.nfs_get_error(P(nfs)).decode())
    return status


def b(text):
    return text.encode()


def names(path):
    directory = P()
    check(lib.nfs_opendir(P(nfs), b(path), ctypes.byref(directory)))
    found = []
    while True:
        entry = lib.nfs_readdir(P(nfs), directory)
        if not entry:
            break
        name = entry.contents.name.decode()
        if name not in (".", ".."):
            found.append(name)
    lib.nfs_closedir(P(nfs), directory)
    return found


def create_file(path, mode=0o644):
    handle = P()
    check(lib.nfs_creat(P(nfs), b(path), mode, ctypes.byref(handle)))
    return handle


def run(words):
    command, args = words[0], words[1:]
    if command == "mkdir":
        check(lib.nfs_mkdir(P(nfs), b(args[0])))
    elif command == "rmdir":
        check(lib.nfs_rmdir(P(nfs), b(args[0])))
    elif command == "unlink":
        check(lib.nfs_unlink(P(nfs), b(args[0])))
    elif command == "rename":
        check(lib.nfs_rename(P(nfs), b(args[0]), b(args[1])))
    elif command == "link":
        check(lib.nfs_link(P(nfs), b(args[0]), b(args[1])))
    elif command == "symlink":
        check(lib.nfs_symlink(P(nfs), b(args[0]), b(args[1])))
    elif command == "readlink":
        buffer = ctypes.create_string_buffer(4097)
        check(lib.nfs_readlink(P(nfs), b(args[0]), buffer, 4096))
        return buffer.value.decode()
    elif command == "stat":
        stat = Stat()
        check(lib.nfs_stat64(P(nfs), b(args[0]), ctypes.byref(stat)))
        return (f"mode={stat.mode:o} nlink={stat.nlink} uid={stat.uid} gid={stat.gid} "
                f"size={stat.size} ino={stat.ino} mtime={stat.mtime}")
    elif command == "chmod":
        check(lib.nfs_chmod(P(nfs), b(args[0]), int(args[1], 8)))
    elif command == "chown":
        check(lib.nfs_chown(P(nfs), b(args[0]), int(args[1]), int(args[2])))
    elif command == "truncate":
        check(lib.nfs_truncate(P(nfs), b(args[0]), int(args[1])))
    elif command == "write":
        data = " ".join(args[1:]).encode()
        handle = create_file(args[0])
        check(lib.nfs_pwrite(P(nfs), handle, 0, len(data), data))
        check(lib.nfs_close(P(nfs), handle))
    elif command == "cat":
        handle = P()
        check(lib.nfs_open(P(nfs), b(args[0]), os.O_RDONLY, ctypes.byref(handle)))
        buffer = ctypes.create_string_buffer(65536)
        count = check(lib.nfs_pread(P(nfs), handle, 0, 65536, buffer))
        check(lib.nfs_close(P(nfs), handle))
        return buffer.raw[:count].decode()
    elif command == "list":
        return ",".join(sorted(names(args[0])))
    elif command == "count":
        found = names(args[0])
        return f"{len(found)} distinct={len(set(found))}"
    elif command == "create_many":
        directory, prefix, first, count = args[0], args[1], int(args[2]), int(args[3])
        for number in range(first, first + count):
            check(lib.nfs_close(P(nfs), create_file(f"{directory}/{prefix}{number:06d}")))
    elif command == "open":
        handle = P()
        check(lib.nfs_open(P(nfs), b(args[0]), os.O_RDWR, ctypes.byref(handle)))
        handles[str(len(handles))] = handle
        return str(len(handles) - 1)
    elif command == "pread":
        length = int(args[2])
        buffer = ctypes.create_string_buffer(length)
        count = check(lib.nfs_pread(P(nfs), handles[args[0]], int(args[1]), length, buffer))
        return buffer.raw[:count].decode(errors="replace")
    elif command == "fstat":
        stat = Stat()
        check(lib.nfs_fstat64(P(nfs), handles[args[0]], ctypes.byref(stat)))
        return f"size={stat.size} ino={stat.ino}"
    elif command == "close":
        check(lib.nfs_close(P(nfs), handles.pop(args[0])))
    elif command == "statvfs":
        stat = StatVfs()
        check(lib.nfs_statvfs64(P(nfs), b(args[0]), ctypes.byref(stat)))
        return f"blocks={stat.blocks} files={stat.files} namemax={stat.namemax}"
    elif command == "quit":
        sys.exit(0)
    else:
        raise OSError(22, f"unknown command {command}")
    return ""


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    try:
        result = run(words)
        print(f"ok {result}".rstrip(), flush=True)
    except OSError as error:
        print(f"err {error.errno} {error.strerror}", flush=True)
