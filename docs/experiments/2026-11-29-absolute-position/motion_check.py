"""The motion check of the README ("Is the model's under-turning real"): the evaluation's shift and zoom estimators
(frontend::estimate_shift / estimate_zoom, re-written in numpy) with and without the patch-grid pattern divided out,
on CPU rollouts of the shipped model and on the simulator's frames. Inputs: for each world W, the trace
/tmp/turn_W.json (kvworld-sim trace --world-seed W --policy-seed P --frames 132 --context-frames 4) and
/tmp/turn_W/ (kvworld-cli generate --model assets/models/default --trace /tmp/turn_W.json --out /tmp/turn_W
--ground-truth --no-video). Usage: python3 motion_check.py 1600000 1607919 (output: motion_check.txt)"""
import numpy as np, json, os, sys
from PIL import Image
from scipy.ndimage import map_coordinates
def luma(p): return np.asarray(Image.open(p).convert('RGB'),dtype=np.float64)@np.array([0.299,0.587,0.114])
def div(y):
    h,w=y.shape; p=y.reshape(h//8,8,w//8,8).mean(axis=(0,2)); m=p.mean()
    return y if m<1 else y*m/np.tile(np.maximum(p,0.05*m),(h//8,w//8))
def shift(ya,yb,r=10):
    h,w=ya.shape; y0,y1=h//4,3*h//4
    err=np.array([((yb[y0:y1,r:w-r]-ya[y0:y1,r-d:w-r-d])**2).mean() for d in range(-r,r+1)])
    best=int(err.argmin()); sub=0
    if 0<best<2*r:
        l,c,rr=err[best-1],err[best],err[best+1]; den=l-2*c+rr
        if den>1e-12: sub=0.5*(l-rr)/den
    return best-r+sub
def zoom(ya,yb):
    h,w=ya.shape; cx=cy=(w-1)/2
    Y,X=np.mgrid[h//6:5*h//6, w//6:5*w//6].astype(float)
    best=(1e300,1)
    for k in range(-10,31):
        s=1+0.002*k
        v=map_coordinates(ya,[cy+(Y-cy)/s, cx+(X-cx)/s],order=1)
        e=((yb[h//6:5*h//6, w//6:5*w//6]-v)**2).mean()
        if e<best[0]: best=(e,s)
    return best[1]
res={}
for w in sys.argv[1:]:
    d=f'/tmp/turn_{w}'
    acts=json.load(open(f'/tmp/turn_{w}.json'))['actions']
    names=sorted(os.listdir(d+'/frames'))[4:]
    for src in ('frames','ground_truth'):
        ys=[luma(f'{d}/{src}/{n}') for n in names]
        for mode,f in (('raw',lambda y:y),('grid',div)):
            yy=[f(y) for y in ys]
            R=res.setdefault((src,mode),{'yaw':[],'sh':[],'fz':[],'sz':[]})
            for i in range(1,len(yy)):
                a=acts[4+i]
                R['yaw'].append(a[3]); R['sh'].append(shift(yy[i-1],yy[i]))
                fwd=a[0]>0.5 and abs(a[3])<0.5 and abs(a[1])<0.25
                still=abs(a[0])<0.1 and abs(a[1])<0.1 and abs(a[3])<0.1 and abs(a[2])<0.1
                if fwd or still: (R['fz'] if fwd else R['sz']).append(zoom(yy[i-1],yy[i]))
out={}
for k,R in res.items():
    yaw=np.array(R['yaw']);sh=np.array(R['sh']);yc=yaw-yaw.mean()
    out[k]=dict(slope=(yc*(sh-sh.mean())).sum()/(yc*yc).sum(), corr=np.corrcoef(yaw,sh)[0,1], fz=np.mean(R['fz']) if R['fz'] else float('nan'), sz=np.mean(R['sz']) if R['sz'] else float('nan'), nf=len(R['fz']), ns=len(R['sz']))
    print(k, {a:round(b,4) if isinstance(b,float) else b for a,b in out[k].items()})
for mode in ('raw','grid'):
    g,s=out[('frames',mode)],out[('ground_truth',mode)]
    print(mode,'turn rate %.0f%%'%(100*g['slope']/s['slope']), 'forward fraction %.0f%%'%(100*(g['fz']-g['sz'])/(s['fz']-s['sz'])) if s['ns'] and g['ns'] else 'forward zoom gen %.4f sim %.4f'%(g['fz'],s['fz']))
