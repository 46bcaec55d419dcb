import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';
import { tauriBackend, toBackendError, type Backend } from './lib/backend';

declare global {
  interface Window {
    __TAURI_INTERNALS__?: unknown;
  }
}

async function pickBackend(): Promise<Backend> {
  if (window.__TAURI_INTERNALS__) return tauriBackend();
  // A plain browser (`npm run dev`): the in-memory demo.
  const { createFakeBackend, demoSnapshot } = await import('./lib/fake');
  const fake = createFakeBackend(demoSnapshot(), { latencyMs: 120, kdfMs: 900 });
  // For poking the demo from the console: __firedoorDemo.setOnline(false), .open({view:'approvals'}).
  (window as unknown as { __firedoorDemo: unknown }).__firedoorDemo = fake;
  return fake;
}

function showFatal(target: HTMLElement, error: unknown) {
  // Built with DOM calls (no innerHTML, no inline script): works under the strict CSP.
  const main = document.createElement('main');
  main.className = 'fallback';
  main.setAttribute('role', 'alert');
  main.style.cssText = 'max-width:560px;margin:14vh auto 0;padding:0 16px';
  const h = document.createElement('h1');
  h.textContent = 'Firedoor could not start its window';
  const p = document.createElement('p');
  p.textContent = toBackendError(error).message;
  const b = document.createElement('button');
  b.textContent = 'Reload';
  b.addEventListener('click', () => location.reload());
  main.append(h, p, b);
  target.replaceChildren(main);
}

async function start() {
  const target = document.getElementById('app')!;
  try {
    const backend = await pickBackend();
    target.replaceChildren();
    mount(App, { target, props: { backend } });
  } catch (e) {
    console.error(e);
    showFatal(target, e);
  }
}

void start();
