import time, sounddevice as sd, numpy as np, subprocess, sys
pp = subprocess.Popen(['paplay','--device=virt','--latency-msec=10','/tmp/tone10.wav'])
time.sleep(0.3)
bs = int(sys.argv[1]); lat = sys.argv[2]
n=[0]; ts=[]
def cb(data, frames, t, status):
    n[0]+=1; ts.append(time.monotonic())
s = sd.InputStream(device=sys.argv[3], samplerate=48000, channels=1, dtype='float32', blocksize=bs, callback=cb, latency=float(lat) if lat[0].isdigit() else lat)
s.start(); time.sleep(2); s.close(); pp.kill()
print(bs, lat, 'callbacks', n[0], 'audio s', n[0]*bs/48000 if bs else '?', 'last at', round(ts[-1]-ts[0],3) if ts else None)
