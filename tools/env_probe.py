"""Facts about a Python environment for tools/setup_env.sh (stdlib only).

Run with the TARGET interpreter (any Python >= 3.8):

  env_probe.py protected                 name==version of torch, torchvision, numpy
                                         and opencv distributions present, one a line
  env_probe.py fingerprint               version, location and file stamps of those
                                         (compared before/after setup)
  env_probe.py constraints SRC OUT [PIN...]
                                         SRC's constraints for what setup may add:
                                         lines of present protected packages become
                                         ==present (PIN lines, name==version, override);
                                         other present packages lose their pin, except
                                         setuptools, which becomes <81 (pkg_resources);
                                         --all-pins keeps them (a full wheelhouse)
  env_probe.py mmcv-key [ops]            the mmcv wheel cache key of this interpreter's
                                         torch: torch<ver>-<cuda<ver>|cpu>-<cpXY>-<ops>
  env_probe.py cuda-arch                 TORCH_CUDA_ARCH_LIST of the visible GPUs
  env_probe.py ext-loads WHEEL           exit 0 when WHEEL's mmcv/_ext extension loads
                                         against this interpreter's torch
  env_probe.py site-dirs                 this interpreter's site-packages folders
  env_probe.py keep-reqs OUT FILE...     the requirements of FILEs that TORCH=keep installs
                                         with their dependencies: without mmengine (--no-deps),
                                         opencv-python where another cv2 distribution is
                                         present, xtcocotools (installed on its own,
                                         --no-build-isolation); numpy / opencv-python
                                         added where absent
  env_probe.py numpy-major               the present numpy's major version (0: none)
  env_probe.py report-pins REPORT [EXCLUDE...]
                                         name==version of every package of a
                                         `pip install --report` file, EXCLUDE names left out
"""
import hashlib
import importlib.metadata as md
import json
import os
import re
import sys

PROTECTED = ('torch', 'torchvision', 'numpy', 'opencv-python', 'opencv-python-headless',
             'opencv-contrib-python', 'opencv-contrib-python-headless')


def canon(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def present_dists():
    """{canonical name: Distribution} of what this interpreter sees on sys.path
    (the first one wins, as for imports)."""
    found = {}
    for dist in md.distributions():
        name = dist.metadata['Name']
        if name and canon(name) not in found:
            found[canon(name)] = dist
    return found


def protected():
    dists = present_dists()
    for name in PROTECTED:
        if name in dists:
            print(f'{name}=={dists[name].version}')


def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return 'missing'
    return f'{st.st_mtime_ns}:{st.st_size}'


def fingerprint():
    """One line per protected distribution: version, dist-info folder, the
    sha256 of its RECORD and the mtime/size of its metadata and of the files
    that make the package (torch/__init__.py, the compiled core)."""
    dists = present_dists()
    for name in PROTECTED:
        dist = dists.get(name)
        if dist is None:
            continue
        info = str(dist._path) if hasattr(dist, '_path') else '?'
        record = dist.read_text('RECORD') or ''
        files = [str(dist.locate_file(f)) for f in (dist.files or [])
                 if str(f).endswith(('__init__.py', '.so')) and str(f).count('/') <= 2][:20]
        stamps = ' '.join(f'{os.path.basename(f)}@{_stamp(f)}' for f in sorted(files))
        print(f'{name}=={dist.version} {info} record:'
              f'{hashlib.sha256(record.encode()).hexdigest()[:16]} '
              f'METADATA@{_stamp(os.path.join(info, "METADATA"))} {stamps}')


def constraints(src, out, *pins):
    all_pins = '--all-pins' in pins
    pins = [p for p in pins if p != '--all-pins']
    dists = present_dists()
    forced = {}
    for pin in pins:
        name, _, ver = pin.partition('==')
        forced[canon(name)] = ver
    for name in PROTECTED:
        if name in dists and name not in forced:
            forced[name] = dists[name].version
    lines = []
    for line in open(src):
        text = line.split('#', 1)[0].strip()
        if not text:
            continue
        name = canon(re.split(r'[<>=!~ ;\[]', text, 1)[0])
        if name in forced:
            continue
        if name in dists and not all_pins:
            if name == 'setuptools':
                lines.append('setuptools<81  # pkg_resources (mmengine, mim, mmcv setup.py)')
            continue  # present: setup does not add it, its version stays
        lines.append(text)
    lines += [f'{name}=={ver}  # present in the target environment'
              for name, ver in sorted(forced.items())]
    with open(out, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def mmcv_key(ops='cpu'):
    import torch
    cuda = torch.version.cuda
    tag = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    ver = torch.__version__.replace('+', '_')
    print(f'torch{ver}-{"cuda" + cuda if cuda else "cpu"}-{tag}-{ops}')


def cuda_arch():
    import torch
    if not torch.cuda.is_available():
        sys.exit('no GPU is visible to torch (torch.cuda.is_available() is False)')
    caps = sorted({torch.cuda.get_device_capability(i)
                   for i in range(torch.cuda.device_count())})
    print(';'.join(f'{a}.{b}' for a, b in caps))


def ext_loads(wheel):
    """Load mmcv/_ext from WHEEL against this torch, without installing it."""
    import importlib.machinery
    import importlib.util
    import tempfile
    import zipfile

    import torch  # noqa: F401  (the extension links against libtorch)
    tag = f'cpython-{sys.version_info[0]}{sys.version_info[1]}'
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        names = [n for n in zf.namelist()
                 if re.fullmatch(r'mmcv/_ext\.[^/]*\.so', n) and tag in n]
        if not names:
            sys.exit(f'{wheel} has no mmcv/_ext for {tag}')
        path = zf.extract(names[0], tmp)
        loader = importlib.machinery.ExtensionFileLoader('mmcv._ext', path)
        spec = importlib.util.spec_from_file_location('mmcv._ext', path, loader=loader)
        try:
            loader.exec_module(importlib.util.module_from_spec(spec))
        except ImportError as exc:
            sys.exit(f'{os.path.basename(wheel)} does not load against torch '
                     f'{torch.__version__}: {exc}')


def site_dirs():
    import site
    dirs = site.getsitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    for d in dirs:
        if os.path.isdir(d):
            print(d)


CV2_DISTS = ('opencv-python', 'opencv-python-headless', 'opencv-contrib-python',
             'opencv-contrib-python-headless')


def _numpy_major(dists):
    return int(dists['numpy'].version.split('.')[0]) if 'numpy' in dists else 0


def numpy_major():
    print(_numpy_major(present_dists()))


def keep_reqs(out, *files):
    dists = present_dists()
    drop = {'mmengine', 'xtcocotools'}  # xtcocotools: built against the numpy present
    if any(d in dists for d in CV2_DISTS):
        drop.add('opencv-python')
    reqs, seen = [], set()
    for path in files:
        for line in open(path):
            text = line.split('#', 1)[0].strip()
            if not text or text.startswith('-'):
                continue
            name = canon(re.split(r'[<>=!~ ;\[]', text, 1)[0])
            if name not in drop and name not in seen:
                seen.add(name)
                reqs.append(text)
    for name in ('numpy', 'opencv-python'):
        if name not in seen and name not in drop:
            reqs.append(name)
    with open(out, 'w') as f:
        f.write('\n'.join(reqs) + '\n')


def report_pins(report, *exclude):
    skip = {canon(n) for n in exclude}
    with open(report) as f:
        items = json.load(f)['install']
    for item in items:
        meta = item['metadata']
        if canon(meta['name']) not in skip:
            print(f"{meta['name']}=={meta['version']}")


if __name__ == '__main__':
    cmd, args = sys.argv[1], sys.argv[2:]
    {'protected': protected, 'fingerprint': fingerprint, 'constraints': constraints,
     'mmcv-key': mmcv_key, 'cuda-arch': cuda_arch, 'ext-loads': ext_loads,
     'site-dirs': site_dirs, 'report-pins': report_pins, 'keep-reqs': keep_reqs,
     'numpy-major': numpy_major}[cmd](*args)
