import re,math
def parse(fn):
    out=[]
    for l in open(fn):
        m=re.match(r"revisit, (.*?): world (\d+) of \d+ \(seed (\d+), (\d+) frames\): model ([\d.\-]+) dB, recall off ([\d.\-]+) dB, simulator ([\d.\-]+) dB",l)
        if m: out.append((m[1],int(m[2]),int(m[4]),float(m[5]),float(m[6]),float(m[7])))
    return out
def pooled(rows,i):
    n=sum(r[2] for r in rows); mse=sum(r[2]*10**(-r[i]/10) for r in rows)/n; return -10*math.log10(mse)
for fn in ['/work/.device/1/rv/bf16.txt','/work/.device/3/rv/q42_32.txt']:
    rows=parse(fn)
    for lab in sorted(set(r[0] for r in rows)):
        for k in (8,16,32):
            rr=[r for r in rows if r[0]==lab and r[1]<=k]
            m,o,s=pooled(rr,3),pooled(rr,4),pooled(rr,5)
            print(lab,k,'%.2f %.2f %.2f -> %.0f%%'%(m,o,s,100*(m-o)/(s-o)))
import random
for fn in ['/work/.device/1/rv/bf16.txt','/work/.device/3/rv/q42_32.txt']:
    rows=parse(fn)
    for lab in sorted(set(r[0] for r in rows)):
        rr=[r for r in rows if r[0]==lab]
        d=[r[3]-r[4] for r in rr]; random.seed(2)
        bs=sorted(sum(random.choice(d) for _ in d)/len(d) for _ in range(4000))
        print(lab,'model-off per world %.2f [%.2f, %.2f], ahead in %d of %d; model>=sim in %d'%(sum(d)/len(d),bs[100],bs[3900],sum(x>0 for x in d),len(d),sum(r[3]>=r[5] for r in rr)))
