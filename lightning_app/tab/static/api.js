// Talking to the plugin's routes; every route answers JSON, an error as {"error": "<one line>"}.

export async function getJSON(path) {
  const response = await fetch(path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

export async function postForm(path, form) {
  const response = await fetch(path, {method: 'POST', body: form});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

export function query(parameters) {
  return new URLSearchParams(parameters).toString();
}

export function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function showError(container, error) {
  container.append(element('p', {class: 'error', text: String(error.message || error)}));
}

// One distinct colour per series: hues spread around the wheel.
export function palette(count) {
  return Array.from({length: count}, (_, i) => `hsl(${Math.round((360 * i) / Math.max(count, 1))}, 70%, 42%)`);
}
