// The feature-visualisation view, a per-model gallery: per layer a grid of channel renders; a channel
// opens its renders across training, its top and bottom dataset examples and its LCA over training.
import {element, getJSON, query, showError} from './api.js';
import {lineChart} from './charts.js';

async function openChannel(panel, run, layer, channel) {
  panel.replaceChildren(element('h3', {text: `${layer}, channel ${channel}`}));
  try {
    const view = await getJSON(`./feature_vis/channel?${query({run, layer, channel})}`);
    const image = (src, caption, cls = 'render') => element('figure', {}, [element('img', {class: cls, src, alt: caption}), element('figcaption', {text: caption})]);
    panel.append(element('h4', {text: 'rendered across training (the activation reached)'}),
      element('div', {id: 'channel-renders'}, view.renders.map((r) => image(
        `./feature_vis/render?${query({run, layer, step: r.step, position: r.position})}`, `step ${r.step}: ${r.value.toPrecision(3)}`))));
    const example = (e, kind) => image(`./feature_vis/example?${query({run, layer, step: view.examples_step, probe: e.probe, ...(e.box ? {box: e.box.join(',')} : {})})}`,
      `#${e.index}: ${e.value.toPrecision(3)}`, `example ${kind}`);
    panel.append(element('h4', {text: `probe images that activate it most (cropped to its receptive field) and least, step ${view.examples_step}`}),
      element('div', {id: 'channel-top'}, view.top.map((e) => example(e, 'top'))),
      element('div', {id: 'channel-bottom'}, view.bottom.map((e) => example(e, 'bottom'))));
    if (view.lca) {
      const chart = element('div', {class: 'chart', id: 'channel-lca-chart'});
      panel.append(chart);
      await lineChart(chart, [{name: `unit ${channel}`, x: view.lca.x, y: view.lca.y}],
        {title: `cumulative LCA of ${layer} unit ${channel} (total ${view.lca.total.toPrecision(3)}; negative: helped)`, ytitle: 'cumulative LCA', height: 300});
    } else {
      panel.append(element('p', {text: 'No LCA for this unit: the run has no LCA store, or the layer owns no parameters.'}));
    }
  } catch (error) {
    showError(panel, error);
  }
}

export async function renderFeatureVis(container, run) {
  container.replaceChildren();
  try {
    const index = await getJSON(`./feature_vis?${query({run})}`);
    container.append(element('h2', {text: `Feature visualisation: ${run}`}),
      element('p', {text: 'Images optimised to excite each channel (the newest render). Click one: its renders across training, its dataset examples and its LCA.'}));
    const panel = element('div', {class: 'channel', id: 'channel-panel'});
    for (const [layer, info] of Object.entries(index.layers)) {
      const step = info.steps[info.steps.length - 1];
      container.append(element('h3', {text: `${layer} (step ${step})`}), element('div', {class: 'gallery'}, info.channels.map((channel, position) => element('figure', {
        onclick: () => openChannel(panel, run, layer, channel), title: 'click: this channel across training',
      }, [element('img', {class: 'render', alt: `${layer} channel ${channel}`, src: `./feature_vis/render?${query({run, layer, step, position})}`}),
        element('figcaption', {text: `${channel < 0 ? 'layer' : `channel ${channel}`}: ${info.values[position].toPrecision(3)}`})]))));
    }
    container.append(panel);
  } catch (error) {
    showError(container, error);
  }
}
