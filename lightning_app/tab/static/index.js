// The Interpretability tab's entry point: TensorBoard loads this module in the tab's frame and calls
// render(). A run selector and one view at a time: LCA, Attributions, Explorer.
import {element, getJSON, showError} from './static/api.js';

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = element('script', {src});
    script.addEventListener('load', resolve);
    script.addEventListener('error', () => reject(new Error(`cannot load ${src}`)));
    document.head.append(script);
  });
}

const VIEWS = [
  {key: 'lca', label: 'LCA', has: (run) => run.lca, module: './static/lca_view.js', draw: (m, c, run, info) => m.renderLCA(c, run.name, info.runs)},
  {key: 'attributions', label: 'Attributions', has: (run) => run.attributions, module: './static/attribution_view.js', draw: (m, c, run) => m.renderAttributions(c, run.name, run.checkpoints)},
  {key: 'feature_vis', label: 'Feature visualisation', has: (run) => run.feature_vis, module: './static/feature_vis_view.js', draw: (m, c, run) => m.renderFeatureVis(c, run.name)},
  {key: 'explorer', label: 'Explorer', has: (run) => run.checkpoints.length > 0, module: './static/explorer_view.js', draw: (m, c, run, info) => m.renderExplorer(c, run.name, run, info.methods)},
];

export async function render() {
  document.head.append(element('link', {rel: 'stylesheet', href: './static/style.css'}));
  const body = element('div', {class: 'tab'});
  document.body.append(body);
  try {
    await loadScript('./vendor/plotly.min.js');
    const info = await getJSON('./runs');
    if (!info.runs.length) {
      body.append(element('p', {text: 'No run under the logdir holds an LCA store, attribution records or a checkpoint with its config.'}));
      return;
    }
    const runSelect = element('select', {id: 'run-select'}, info.runs.map((r) => element('option', {value: r.name, text: r.name})));
    const buttons = element('div', {class: 'views'});
    const view = element('div', {class: 'view', id: 'view'});
    let current = VIEWS[0].key;
    const show = async () => {
      const run = info.runs.find((r) => r.name === runSelect.value);
      const available = VIEWS.filter((v) => v.has(run));
      if (!available.some((v) => v.key === current)) current = available.length ? available[0].key : current;
      buttons.replaceChildren(...VIEWS.map((v) => element('button', {
        class: v.key === current ? 'selected' : '', id: `view-${v.key}`, ...(v.has(run) ? {} : {disabled: 'disabled'}),
        text: v.label, onclick: () => { current = v.key; show(); },
      })));
      const chosen = VIEWS.find((v) => v.key === current);
      if (!chosen.has(run)) {
        view.replaceChildren(element('p', {text: `Run ${run.name} has nothing for this view.`}));
        return;
      }
      const module = await import(chosen.module);
      await chosen.draw(module, view, run, info);
    };
    runSelect.addEventListener('change', show);
    body.append(element('div', {class: 'header'}, [element('label', {text: 'run '}), runSelect, buttons]), view);
    await show();
  } catch (error) {
    showError(body, error);
  }
}
