// The live explorer: ask a run's checkpoint about an uploaded or validation image: top-5, attribution
// with any registered method for a class chosen by clicking a prediction, and a layer's activations.
import {element, getJSON, postForm, showError} from './api.js';

async function ask(fields, image, status) {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) if (value !== undefined && value !== null && value !== '') form.append(key, value);
  if (image) form.append('image', image);
  let job = await postForm('./explorer/submit', form);
  const cancel = element('button', {text: 'cancel', onclick: () => getJSON(`./explorer/cancel?id=${job.id}`)});
  const line = element('span');
  status.replaceChildren(line, cancel);
  while (job.status === 'queued' || job.status === 'running') {
    line.textContent = `${fields.question}: ${job.status} (${Math.round(100 * job.progress)}%) `;
    job = await getJSON(`./explorer/job?id=${job.id}&wait=1`);
  }
  status.replaceChildren();
  if (job.status !== 'done') throw new Error(job.error || `job ${job.status}`);
  return job.result;
}

export async function renderExplorer(container, run, runInfo, methods) {
  container.replaceChildren(element('h2', {text: `Explorer: ${run}`}));
  const checkpoint = element('select', {id: 'explorer-checkpoint'}, runInfo.checkpoints.map((c) => element('option', {value: c, text: c})));
  const file = element('input', {id: 'explorer-file', type: 'file', accept: 'image/png,image/jpeg,image/tiff,.tif,.tiff'});
  const bands = element('input', {id: 'explorer-bands', type: 'text', size: '8', placeholder: 'e.g. 4,2,1',
    title: 'the bands shown of a multispectral image (default: grey, or the first three)'});
  const valIndex = element('input', {id: 'explorer-val-index', type: 'number', min: '0', value: '0'});
  const method = element('select', {id: 'explorer-method'}, methods.map((m) => element('option', {value: m, text: m})));
  method.value = methods.includes('Saliency') ? 'Saliency' : methods[0];
  const settings = element('input', {id: 'explorer-settings', type: 'text', value: '{}', size: '40', title: "the method's arguments as JSON, e.g. {\"n_steps\": 32}"});
  const layer = element('select', {id: 'explorer-layer'});
  const status = element('div', {class: 'status', id: 'explorer-status'});
  const predictions = element('div', {id: 'explorer-predictions'});
  const attribution = element('div', {id: 'explorer-attribution'});
  const activations = element('div', {id: 'explorer-activations'});
  const channels = element('input', {id: 'explorer-channels', type: 'text', value: '0-7', size: '8', title: 'channels: 0-7 or 0,3,5'});
  const renderSettings = element('input', {id: 'explorer-render-settings', type: 'text', size: '60',
    value: '{"steps": 128, "size": 64, "lr": 0.05, "parameterisation": "fourier", "decorrelate": true, "penalties": {}}',
    title: 'objective (channel, neuron), steps, size, lr, parameterisation (fourier, pixel), decorrelate, transforms ([{"pad": 2}, {"jitter": 1}]), penalties ({"tv": 0.01}), seed, bands'});
  const rendered = element('div', {id: 'explorer-renders'});
  const errors = element('div');
  let target = null;
  const base = () => ({run, checkpoint: checkpoint.value, val_index: file.files.length ? '' : valIndex.value, bands: bands.value});
  const image = () => (file.files.length ? file.files[0] : null);
  const guarded = (work) => async () => {
    errors.replaceChildren();
    try { await work(); } catch (error) { showError(errors, error); }
  };
  const explain = guarded(async () => {
    const result = await ask({...base(), question: 'attribute', method: method.value, settings: settings.value, target: target ?? ''}, image(), status);
    attribution.replaceChildren(
      element('p', {text: `${result.method} for class ${result.target_name} (p = ${result.probability.toFixed(3)}); colour scale +-${result.scale.toPrecision(3)}`}),
      ...['input', 'attribution', 'overlay'].map((panel) => element('img', {class: 'attribution large', src: result.png[panel], alt: panel})));
  });
  const predict = guarded(async () => {
    const result = await ask({...base(), question: 'predict'}, image(), status);
    if (result.segmentation) {
      predictions.replaceChildren(element('p', {text: `predicted mask (red): ${(100 * result.mask_fraction).toFixed(1)} % of the pixels`}),
        element('img', {class: 'attribution large', src: result.overlay, alt: 'predicted mask', id: 'explorer-mask'}));
      return;
    }
    target = result.top[0].class;
    const header = element('tr', {}, [element('th', {text: 'class (click: explain it)'}), element('th', {text: 'probability'})]);
    predictions.replaceChildren(element('table', {class: 'numbers', id: 'explorer-top5'}, [header, ...result.top.map((row) => element('tr', {
      class: 'prediction', onclick: () => { target = row.class; explain(); },
      title: 'click: explain this class',
    }, [element('td', {text: row.name}), element('td', {text: row.probability.toPrecision(3)})]))]));
    await explain();
  });
  const showActivations = guarded(async () => {
    const result = await ask({...base(), question: 'activations', layer: layer.value}, image(), status);
    activations.replaceChildren(element('p', {text: `${result.layer}: channels by mean activation, strongest first`}),
      ...result.maps.map((m) => element('figure', {}, [element('img', {class: 'activation', src: m.png, alt: `channel ${m.channel}`}),
        element('figcaption', {text: `${m.channel}: ${result.ranking.find((r) => r.channel === m.channel).mean.toPrecision(3)}`})])));
  });
  const renderChannels = guarded(async () => {
    const result = await ask({run, checkpoint: checkpoint.value, question: 'render', layer: layer.value, channels: channels.value, settings: renderSettings.value}, null, status);
    rendered.replaceChildren(element('p', {text: `${result.layer}: rendered channels (the activation reached)`}),
      ...result.renders.map((r) => element('figure', {}, [element('img', {class: 'render', src: r.png, alt: `channel ${r.channel}`}),
        element('figcaption', {text: `${r.channel}: ${r.value.toPrecision(3)}`})])));
  });
  const dream = guarded(async () => {
    const result = await ask({...base(), question: 'dream', layer: layer.value, settings: renderSettings.value}, image(), status);
    rendered.replaceChildren(element('p', {text: `DeepDream of ${result.layer} (layer energy ${result.start.toPrecision(3)} -> ${result.end.toPrecision(3)})`}),
      element('img', {class: 'attribution large', src: result.png, alt: 'deepdream'}));
  });
  const filters = guarded(async () => {
    const result = await ask({...base(), question: 'filters', layer: layer.value, count: '10'}, image(), status);
    rendered.replaceChildren(element('p', {text: `${result.layer}: filters by Deep Taylor relevance for the predicted class (share of the layer's)`}),
      element('table', {class: 'numbers', id: 'explorer-filters'}, result.filters.map((f) => element('tr', {}, [
        element('td', {text: `filter ${f.filter}`}), element('td', {text: `${(100 * f.share).toFixed(1)} %`})]))));
  });
  container.append(
    element('div', {class: 'controls'}, [element('label', {text: 'checkpoint '}), checkpoint,
      element('label', {text: ' image '}), file, element('label', {text: ' or validation image '}), valIndex,
      element('label', {text: ' display bands '}), bands,
      element('button', {id: 'explorer-predict', text: 'Predict and explain', onclick: predict})]),
    element('div', {class: 'controls'}, [element('label', {text: 'method '}), method, element('label', {text: ' settings '}), settings,
      element('button', {id: 'explorer-explain', text: 'Explain', onclick: explain})]),
    element('div', {class: 'controls'}, [element('label', {text: 'layer '}), layer,
      element('button', {id: 'explorer-activations-button', text: 'Activations', onclick: showActivations}),
      element('button', {id: 'explorer-filters-button', text: 'Relevance per filter', onclick: filters}),
      element('button', {id: 'explorer-dream', text: 'DeepDream', onclick: dream})]),
    element('div', {class: 'controls'}, [element('label', {text: 'channels '}), channels, element('label', {text: ' feature visualisation '}), renderSettings,
      element('button', {id: 'explorer-render', text: 'Render', onclick: renderChannels})]),
    status, errors, predictions, attribution, activations, rendered);
  try {
    const info = await ask({run, checkpoint: checkpoint.value, question: 'layers'}, null, status);
    layer.replaceChildren(...info.layers.map((name) => element('option', {value: name, text: name})));
    if (info.layers.length) layer.value = info.default_layer;
    valIndex.max = String(info.validation_size - 1);
  } catch (error) {
    showError(errors, error);
  }
}
