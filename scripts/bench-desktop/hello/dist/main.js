// Calls the `ready` command as soon as the DOM is there and shows its answer.
document.addEventListener('DOMContentLoaded', async () => {
  const msg = await window.__TAURI_INTERNALS__.invoke('ready');
  document.getElementById('msg').textContent = msg;
});
