# Sums callgrind thread files (cg.PID-TID) by thread group: the SQLite
# writer, readers, the server's Tokio workers (axum), the client (reqwest).
import sys, glob, re, collections, subprocess
out = sys.argv[1]
groups = collections.Counter()
for f in sorted(glob.glob(out + '/cg.*')):
    ann = subprocess.run(['callgrind_annotate', '--inclusive=yes', f], capture_output=True, text=True).stdout
    lines = [l for l in ann.splitlines() if re.match(r'^ *[0-9,]+ ', l)]
    if not lines: continue
    total = int(lines[0].split()[0].replace(',', ''))
    def incl(name):
        for l in lines:
            if name in l: return int(l.split()[0].replace(',', ''))
        return 0
    if incl('sqlite::actor::writer_loop') > total / 2: g = 'writer'
    elif incl('Readers::spawn::{{closure}}') > total / 2: g = 'readers'
    elif incl('axum::') > total / 2: g = 'server-workers'
    elif incl('reqwest::') > 0 and incl('prefill') < total / 2: g = 'client'
    else: g = 'other'
    groups[g] += total
for g, n in sorted(groups.items()): print(f'{g}\t{n}')
print('total\t%d' % sum(groups.values()))
