import time, sounddevice as sd, numpy as np, subprocess, sys
pp = subprocess.Popen(['paplay','--device=virt','--latency-msec=10','/tmp/tone10.wav'])
time.sleep(0.3)
s = sd.InputStream(device='pulse', samplerate=48000, channels=1, dtype='float32', blocksize=240, latency='low')
s.start(); t=time.monotonic(); n=0; gaps=[]; last=t
while time.monotonic()-t < 2:
    data, ovf = s.read(240); n+=1; now=time.monotonic(); gaps.append(now-last); last=now
s.close(); pp.kill()
print('reads', n, 'audio s', n*240/48000, 'max gap', round(max(gaps),4), 'level', float(np.abs(data).max()))
