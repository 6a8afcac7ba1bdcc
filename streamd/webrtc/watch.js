// The watch page over WebRTC (WHEP): the fMP4 <video> plays until WebRTC is connected, then this
// switches it to the WebRTC stream and shows the protocol and the measured latency. When WebRTC
// fails (no UDP, ICE blocked, a 4xx/5xx answer) the fMP4 player simply carries on.
(() => {
  const me = document.currentScript;
  const video = document.getElementById('player');
  // ?protocol=mp4 (or hls, or anything but webrtc) keeps the page's own player
  const wanted = new URLSearchParams(location.search).get('protocol');
  if (!me || !video || !window.RTCPeerConnection || (wanted && wanted !== 'webrtc')) return;
  const info = document.createElement('p');
  info.id = 'webrtc-info';
  info.textContent = 'protocol: fMP4 over HTTP (trying WebRTC…)';
  video.after(info);

  const waitFor = (pc, event, done, ms) => new Promise((resolve, reject) => {
    if (done()) return resolve();
    const timer = setTimeout(() => (event === 'icegatheringstatechange' ? resolve() : reject(new Error('ICE did not connect'))), ms);
    pc.addEventListener(event, () => {
      if (done()) { clearTimeout(timer); resolve(); }
      if (pc.connectionState === 'failed') { clearTimeout(timer); reject(new Error('ICE failed')); }
    });
  });

  async function latency(pc) {
    // network (half the round trip) + jitter buffer + decode: what the viewer waits beyond capture
    let rtt = 0, buffer = 0, decode = 0;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'candidate-pair' && r.nominated && r.currentRoundTripTime) rtt = r.currentRoundTripTime;
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        if (r.jitterBufferEmittedCount) buffer = r.jitterBufferDelay / r.jitterBufferEmittedCount;
        if (r.framesDecoded) decode = r.totalDecodeTime / r.framesDecoded;
      }
    });
    return Math.round((rtt / 2 + buffer + decode) * 1000);
  }

  async function play() {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});
    // a file: seek/pause/play over a data channel (live paths have nothing to steer)
    const control = me.dataset.file ? pc.createDataChannel('control') : null;
    let position = '';
    if (control) {
      control.onmessage = (e) => {
        const state = JSON.parse(e.data);
        if (state.type === 'position') position = ` · ${state.position.toFixed(1)} s${state.paused ? ' (paused)' : ''}`;
      };
      const form = document.querySelector('form');
      if (form) {
        form.addEventListener('submit', (e) => {
          if (control.readyState !== 'open') return; // not connected: the form reloads the fMP4 way
          e.preventDefault();
          control.send(JSON.stringify({type: 'seek', position: Number(form.elements.start.value) || 0}));
        });
      }
      video.addEventListener('pause', () => control.readyState === 'open' && video.srcObject && control.send('{"type":"pause"}'));
      video.addEventListener('play', () => control.readyState === 'open' && video.srcObject && control.send('{"type":"play"}'));
      window.streamdControl = control;
    }
    const stream = new MediaStream();
    pc.ontrack = (e) => stream.addTrack(e.track);
    await pc.setLocalDescription(await pc.createOffer());
    await waitFor(pc, 'icegatheringstatechange', () => pc.iceGatheringState === 'complete', 2000);
    const response = await fetch(me.dataset.whep, {
      method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: pc.localDescription.sdp,
    });
    if (response.status !== 201) throw new Error(`${response.status}: ${(await response.text()).trim()}`);
    const resource = response.headers.get('Location');
    await pc.setRemoteDescription({type: 'answer', sdp: await response.text()});
    await waitFor(pc, 'connectionstatechange', () => pc.connectionState === 'connected', 10000);
    video.pause();
    video.srcObject = stream; // takes precedence over src, which stays the fallback's URL
    video.play().catch(() => {});
    window.streamdWebrtc = pc;
    addEventListener('pagehide', () => fetch(resource, {method: 'DELETE', keepalive: true}));
    const update = async () => {
      info.textContent = `protocol: WebRTC (WHEP) · latency ≈ ${await latency(pc)} ms${position}`;
      info.dataset.protocol = 'webrtc';
    };
    await update();
    setInterval(update, 1000);
    const start = Number(new URLSearchParams(location.search).get('start'));
    if (control && start > 0) {
      const seek = () => control.send(JSON.stringify({type: 'seek', position: start}));
      if (control.readyState === 'open') seek(); else control.addEventListener('open', seek);
    }
  }

  play().catch((e) => {
    info.textContent = `protocol: fMP4 over HTTP (WebRTC failed: ${e.message})`;
    info.dataset.protocol = 'fmp4';
  });
})();
