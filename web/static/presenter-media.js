// What the presenter sends (the 设备 panel): the camera or the screen, the
// microphone, the preset (size and bitrate); the preview shows them and, when
// live, the senders switch to them without a new negotiation.
import { t } from "/static/i18n.js";
import { $, errorKey, page, showError } from "/static/presenter-page.js";

const PRESETS = {
  "720p": { width: 1280, height: 720, maxBitrate: 2_500_000 },
  "480p": { width: 854, height: 480, maxBitrate: 1_000_000 },
  "360p": { width: 640, height: 360, maxBitrate: 500_000 },
};

let opening = null; // the openMedia() in progress
let lastDevices = [];

function fillSelect(select, devices, kind) {
  const chosen = select.value;
  select.replaceChildren();
  const mine = devices.filter((d) => d.kind === kind);
  if (!mine.length || mine.every((d) => !d.deviceId)) {
    select.append(new Option(t("presenter.device.default"), ""));
    return;
  }
  mine.forEach((d, i) => {
    select.append(new Option(d.label || t("presenter.device.unnamed", { n: i + 1 }), d.deviceId));
  });
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

function fillDevices(devices) {
  lastDevices = devices;
  fillSelect($("camera"), devices, "videoinput");
  fillSelect($("microphone"), devices, "audioinput");
}

// The device lists again, in the page's language.
export function renderDevices() {
  fillDevices(lastDevices);
}

async function refreshDevices() {
  try {
    fillDevices(await navigator.mediaDevices.enumerateDevices());
  } catch (e) {
    fillDevices([]);
  }
}

function selectedTrack(stream) {
  // Keep the selects on the devices actually opened.
  for (const track of stream.getTracks()) {
    const id = track.getSettings().deviceId;
    const select = track.kind === "audio" ? $("microphone") : $("camera");
    if (id && track.kind === "audio" && [...select.options].some((o) => o.value === id)) {
      select.value = id;
    }
    if (id && track.kind === "video" && $("source").value === "camera"
        && [...select.options].some((o) => o.value === id)) {
      select.value = id;
    }
  }
}

function mediaErrorKey(e) {
  switch (e && e.name) {
    case "NotAllowedError":
    case "SecurityError":
      return ["presenter.error.permission", {}];
    case "NotFoundError":
    case "OverconstrainedError":
      return ["presenter.error.no_device", {}];
    case "NotReadableError":
    case "AbortError":
      return ["presenter.error.device_busy", {}];
    default:
      return ["presenter.error.media", { error: (e && e.message) || String(e) }];
  }
}

function videoConstraints() {
  const preset = PRESETS[$("preset").value];
  const video = { width: { ideal: preset.width }, height: { ideal: preset.height },
                  frameRate: { ideal: 25 } };
  const camera = $("camera").value;
  if (camera) video.deviceId = { exact: camera };
  return video;
}

function audioConstraints() {
  const microphone = $("microphone").value;
  const audio = { echoCancellation: true, noiseSuppression: true };
  if (microphone) audio.deviceId = { exact: microphone };
  return audio;
}

async function openScreen() {
  const preset = PRESETS[$("preset").value];
  const screen = await navigator.mediaDevices.getDisplayMedia({
    video: { width: { ideal: preset.width }, height: { ideal: preset.height },
             frameRate: { ideal: 15 } },
    audio: false,
  });
  const track = screen.getVideoTracks()[0];
  track.contentHint = "detail";
  // The operator stops sharing in the browser's own bar: back to the camera.
  track.addEventListener("ended", () => {
    if ($("source").value === "screen" && page.stream && page.stream.getVideoTracks()[0] === track) {
      $("source").value = "camera";
      media().catch(() => {});
    }
  });
  return track;
}

// Open the chosen camera (or screen) and microphone; the preview shows them and,
// when live, the senders switch to them without a new negotiation.
async function openMedia() {
  let video;
  let audio;
  try {
    if ($("source").value === "screen") {
      try {
        video = await openScreen();
      } catch (e) {
        $("source").value = "camera";
        showError("presenter.error.screen", { error: e.message || e.name || String(e) });
        return openMedia();
      }
      const mic = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints() });
      audio = mic.getAudioTracks()[0];
    } else {
      const both = await navigator.mediaDevices.getUserMedia({
        video: videoConstraints(), audio: audioConstraints() });
      video = both.getVideoTracks()[0];
      audio = both.getAudioTracks()[0];
    }
  } catch (e) {
    if (video) video.stop();
    const [key, values] = mediaErrorKey(e);
    showError(key, values);
    throw e;
  }
  const old = page.stream;
  page.stream = new MediaStream([video, audio].filter(Boolean));
  $("preview").srcObject = page.stream;
  const shown = errorKey();
  if (shown && shown.startsWith("presenter.error.") && shown !== "presenter.error.screen"
      && shown !== "presenter.error.rejected") {
    showError(null);
  }
  await refreshDevices();
  selectedTrack(page.stream);
  if (page.sending) {
    for (const sender of page.sending.pc.getSenders()) {
      const track = sender.track || null;
      const kind = track ? track.kind : null;
      const next = kind === "audio" ? audio : kind === "video" ? video : null;
      if (next) await sender.replaceTrack(next);
    }
    await applyBitrate(page.sending.pc);
  }
  if (old) for (const track of old.getTracks()) track.stop();
  return page.stream;
}

// One opening at a time (the first preview and 开始直播 may overlap).
export function media() {
  const run = (opening || Promise.resolve()).catch(() => {}).then(openMedia);
  opening = run.finally(() => {
    if (opening === pending) opening = null;
  });
  const pending = opening;
  return run;
}

// The stream to send: the preview's, opened first if need be.
export async function mediaToSend() {
  if (opening) await opening;
  if (!page.stream) await media();
  return page.stream;
}

// A new preset: the same devices at another size, and the new bitrate.
async function changePreset() {
  const video = page.stream && page.stream.getVideoTracks()[0];
  if (!video) return media();
  const preset = PRESETS[$("preset").value];
  try {
    await video.applyConstraints({ width: { ideal: preset.width },
                                   height: { ideal: preset.height } });
  } catch (e) {
    return media();
  }
  if (page.sending) await applyBitrate(page.sending.pc);
  return page.stream;
}

export async function applyBitrate(pc) {
  const preset = PRESETS[$("preset").value];
  for (const sender of pc.getSenders()) {
    if (!sender.track || sender.track.kind !== "video") continue;
    const parameters = sender.getParameters();
    if (!parameters.encodings || !parameters.encodings.length) parameters.encodings = [{}];
    for (const encoding of parameters.encodings) encoding.maxBitrate = preset.maxBitrate;
    try {
      await sender.setParameters(parameters);
    } catch (e) {
      console.warn("setParameters", e);
    }
  }
}

export function setupMedia() {
  for (const id of ["source", "camera", "microphone"]) {
    $(id).addEventListener("change", () => media().catch(() => {}));
  }
  $("preset").addEventListener("change", () => changePreset().catch(() => {}));
  navigator.mediaDevices?.addEventListener?.("devicechange", refreshDevices);
}
