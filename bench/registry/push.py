#!/usr/bin/env python3
"""Pushes synthetic OCI images over the distribution API (loopback only).

  push.py URL REPO TAG SIZE             one image with one SIZE-byte random layer; prints the
                                        layer digest
  push.py --concurrent N URL SIZE       N distinct images at once (threads); checks each is
                                        pullable and byte-identical afterwards
"""
import hashlib, http.client, json, os, sys, threading, time, urllib.parse

def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=300)

def request(url, method, path, body=None, headers=None):
    c = conn(url)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

def push_blob(url, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    st, h, _ = request(url, "POST", f"/v2/{repo}/blobs/uploads/")
    assert st == 202, st
    loc = h["location"]
    loc = urllib.parse.urlparse(loc)
    path = loc.path + ("?" + loc.query + "&" if loc.query else "?") + "digest=" + d
    st, _, body = request(url, "PUT", path, body=data, headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    assert st == 201, (st, body)
    return d

def push_image(url, repo, tag, size):
    layer = os.urandom(size)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "tag": tag}).encode()
    cd, ld = push_blob(url, repo, config), push_blob(url, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": len(layer)}],
    }).encode()
    st, _, body = request(url, "PUT", f"/v2/{repo}/manifests/{tag}", body=manifest, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 201, (st, body)
    return ld, hashlib.sha256(layer).hexdigest()

def main():
    if sys.argv[1] == "--concurrent":
        n, url, size = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
        results, errors = {}, []
        def one(i):
            try:
                results[i] = push_image(url, f"load/img{i}", "v1", size)
            except Exception as e:  # reported below
                errors.append(f"{i}: {e!r}")
        t0 = time.time()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads: t.start()
        for t in threads: t.join()
        dt = time.time() - t0
        for i, (ld, hexd) in results.items():
            st, _, data = request(url, "GET", f"/v2/load/img{i}/blobs/{ld}")
            if st != 200 or hashlib.sha256(data).hexdigest() != hexd:
                errors.append(f"{i}: pulled layer differs (status {st})")
        print(f"concurrent pushes: {len(results) - len([e for e in errors if 'differs' in e])}/{n} ok, "
              f"{n * size / dt / 1e6:.0f} MB/s aggregate, {dt:.1f} s; errors: {errors[:5]}")
        sys.exit(1 if errors else 0)
    url, repo, tag, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(push_image(url, repo, tag, size)[0])

if __name__ == "__main__":
    main()
