//! Kubernetes API objects to the [`Model`] of what the node serves
//! ([`model`]), and the model to the desired IPVS table ([`ipvs_table`]),
//! as kube-proxy's IPVS proxier maps them. Pure: no kernel, no files.
//! A Service that cannot be used (a bad address, port, protocol, affinity
//! or EndpointSlice) is a [`Problem`]: skipped and reported, the others
//! served, as kube-proxy skips it.
//!
//! For each port (TCP, UDP, SCTP) of each Service kube-proxy would proxy,
//! a virtual service on:
//! - each ClusterIP (both families of a dual-stack Service);
//! - each `spec.externalIPs` address;
//! - each `status.loadBalancer.ingress` IP whose `ipMode` is not `Proxy`;
//! - each node address, on the port's `nodePort` (NodePort and
//!   LoadBalancer Services; none when `allocateLoadBalancerNodePorts` is
//!   false).
//!
//! Addresses of a family the Service has no ClusterIP of are left out, as
//! kube-proxy's per-family proxiers leave them out. `sessionAffinity:
//! ClientIP` makes the services persistent for
//! `sessionAffinityConfig.clientIP.timeoutSeconds` (default 10800). The
//! real servers are masquerading, of weight 1: the endpoints of the
//! EndpointSlices labelled `kubernetes.io/service-name` with the
//! Service's name, whose port has the Service port's name and protocol
//! (so a named `targetPort` resolves per endpoint). Each endpoint's first
//! address is used, as kube-proxy does; duplicates across slices count
//! once; FQDN slices are ignored. Endpoints are chosen per family as
//! kube-proxy's `CategorizeEndpoints` chooses them (see
//! [`ServicePort::internal_endpoints`]): for Cluster traffic the ready
//! ones the topology hints leave (`hints.forNodes` for `--node-name`,
//! else `hints.forZones` for `--node-zone`, each only when every ready
//! endpoint is hinted and one is for here; the hints carry
//! `trafficDistribution`), else the serving and terminating ones; a
//! `Local` traffic policy (internal for ClusterIPs, external for the
//! rest) keeps only the endpoints on `--node-name`, topology ignored:
//! ready ones, else serving and terminating ones, else none.
//!
//! Skipped as kube-proxy skips them: ExternalName Services, Services whose
//! ClusterIP is `None` (headless) or empty, and Services or slices
//! labelled `service.kubernetes.io/service-proxy-name`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use ipvs_netlink::{Destination, Service, ServiceFlags, ServiceId};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use serde_json::Value;

use ipvs_plan::VirtualServer;

use crate::model::{Cidr, Endpoint, Hint, Model, Problem, ProblemKind, Protocol, ServicePort};

pub mod incremental;
pub mod scheduling;
pub use incremental::{Changes, Incremental};
pub use scheduling::scheduling;

/// The label that hands a Service to another proxy.
pub const SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// The label of an EndpointSlice that names its Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label of an EndpointSlice of a headless Service.
pub const HEADLESS: &str = "service.kubernetes.io/headless";
/// kube-proxy's default persistence timeout for `ClientIP` affinity.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// The API objects of one dump.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    /// The Services.
    pub services: Vec<core::Service>,
    /// The EndpointSlices.
    pub slices: Vec<discovery::EndpointSlice>,
    /// Items of other kinds, which are ignored (kind names, sorted, once each).
    pub ignored_kinds: Vec<String>,
}

/// What the mapping needs to know about this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Addresses NodePorts are served on.
    pub ips: Vec<IpAddr>,
    /// The node's name, for Local traffic policies and `hints.forNodes`
    /// (`None`: no endpoint is local, no node hint is for this node).
    pub name: Option<String>,
    /// The node's zone (`--node-zone`, or its Node's
    /// `topology.kubernetes.io/zone` label), for `hints.forZones`
    /// (`None`: no zone hint is for this node).
    pub zone: Option<String>,
    /// The scheduler of every virtual service whose Service names none
    /// in its annotations ([`mod@scheduling`]).
    pub scheduler: String,
}

/// One desired virtual service and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The virtual service with its real servers.
    pub server: VirtualServer,
    /// `namespace/name:port` of the Service port (port name, or number when unnamed).
    pub origin: String,
    /// Whether kube-proxy binds the address to its dummy interface: yes
    /// for ClusterIPs, external IPs and load-balancer IPs, no for the node
    /// addresses of NodePorts.
    pub bound: bool,
}

/// The desired IPVS table, the model it was planned from, and what the
/// mapping noticed on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapped {
    /// The virtual services, in the order of the Services (by namespace and name).
    pub desired: Vec<Desired>,
    /// Notes for the operator, such as two Services wanting one address.
    pub warnings: Vec<String>,
    /// The Services skipped because they cannot be served.
    pub problems: Vec<Problem>,
    /// The Service ports of the model (for the packet path and the
    /// health-check node ports).
    pub ports: Vec<ServicePort>,
    /// The node addresses NodePorts are served on.
    pub node_ips: Vec<IpAddr>,
}

impl Mapped {
    /// The virtual services alone, as the planner takes them.
    pub fn servers(&self) -> Vec<VirtualServer> {
        self.desired.iter().map(|d| d.server.clone()).collect()
    }
}

/// A readable name of a raw item: `Service default/web`.
fn describe_item(index: usize, item: &Value) -> String {
    let kind = item.get("kind").and_then(Value::as_str).unwrap_or("item");
    let meta = item.get("metadata");
    let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    match (field("namespace"), field("name")) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => format!("{kind} (item {index}, no metadata.name)"),
    }
}

/// Reads a dump as `kubectl get services,endpointslices -A -o json`
/// prints it: a `List` whose items are Services (`v1`) and EndpointSlices
/// (`discovery.k8s.io/v1`). A single Service or EndpointSlice object is
/// read as a list of one. Items of other kinds are ignored; an item that
/// does not read as its kind is an error naming it.
pub fn read_objects(text: &str) -> Result<Objects, String> {
    let top: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items: Vec<Value> = match top {
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => items,
            Some(Value::Null) => Vec::new(),
            Some(_) => return Err("`items` is not an array".to_owned()),
            None if map.contains_key("kind") => vec![Value::Object(map)],
            None => return Err("neither a List (no `items`) nor an API object (no `kind`)".into()),
        },
        _ => return Err("not a JSON object: expected a List as kubectl prints it".to_owned()),
    };
    let mut out = Objects::default();
    for (index, item) in items.into_iter().enumerate() {
        let name = describe_item(index, &item);
        let kind = match item.get("kind") {
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err(format!("{name}: `kind` is not a string")),
            None => return Err(format!("{name}: no `kind`")),
        };
        match kind.as_str() {
            "Service" => {
                let svc: core::Service =
                    serde_json::from_value(item).map_err(|e| format!("{name}: {e}"))?;
                out.services.push(svc);
            }
            "EndpointSlice" => {
                let slice: discovery::EndpointSlice =
                    serde_json::from_value(item).map_err(|e| format!("{name}: {e}"))?;
                out.slices.push(slice);
            }
            _ => {
                if !out.ignored_kinds.contains(&kind) {
                    out.ignored_kinds.push(kind);
                }
            }
        }
    }
    out.ignored_kinds.sort();
    Ok(out)
}

fn labels(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&BTreeMap<String, String>> {
    meta.labels.as_ref()
}

fn has_label(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> bool {
    labels(meta).is_some_and(|l| l.contains_key(key))
}

fn port_number(value: i32) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p != 0)
}

/// Why `ip` can be no virtual address, if it cannot: bound to the dummy
/// interface it would capture the node's own traffic (loopback, any
/// address) or be meaningless (broadcast, multicast, an IPv4 address in
/// IPv6 clothing, which IPVS would never match).
pub fn unusable(ip: &IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V4(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V6(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V6(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V6(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => Some("an IPv4-mapped address"),
        _ => None,
    }
}

/// `ips` but the [`unusable`] ones, each of which is a warning naming
/// the Service.
fn usable_ips(
    ips: Vec<IpAddr>,
    what: &str,
    object: &str,
    warnings: &mut Vec<String>,
) -> Vec<IpAddr> {
    ips.into_iter()
        .filter(|ip| match unusable(ip) {
            Some(why) => {
                warnings.push(format!("{object}: {what} {ip} is {why}: not proxied"));
                false
            }
            None => true,
        })
        .collect()
}

fn parse_ip(text: &str, field: &'static str) -> Result<IpAddr, ProblemKind> {
    text.trim().parse().map_err(|_| ProblemKind::BadAddress {
        field,
        text: text.to_owned(),
    })
}

/// The endpoints of each (port name, protocol) of one Service, from its
/// slices in name order. An endpoint in two slices counts once: the first
/// seen, unless a later one is local (as kube-proxy's cache favours a
/// local copy).
fn endpoints_by_port(
    slices: &[&discovery::EndpointSlice],
    node_name: Option<&str>,
    zone: Option<&str>,
) -> Result<HashMap<(String, Protocol), Vec<Endpoint>>, ProblemKind> {
    let mut out: HashMap<(String, Protocol), Vec<Endpoint>> = HashMap::new();
    for slice in slices {
        let bad = |reason: String| ProblemKind::BadSlice {
            slice: format!(
                "{}/{}",
                slice.metadata.namespace.as_deref().unwrap_or("default"),
                slice.metadata.name.as_deref().unwrap_or("?")
            ),
            reason,
        };
        let family_ok = |ip: &IpAddr| match slice.address_type.as_str() {
            "IPv4" => ip.is_ipv4(),
            "IPv6" => ip.is_ipv6(),
            _ => false,
        };
        match slice.address_type.as_str() {
            "IPv4" | "IPv6" => {}
            "FQDN" => continue,
            "" => return Err(bad("no addressType".into())),
            other => return Err(bad(format!("unknown addressType {other:?}"))),
        }
        for port in slice.ports.iter().flatten() {
            let name = port.name.clone().unwrap_or_default();
            let Some(proto) = Protocol::from_k8s(port.protocol.as_deref()) else {
                return Err(bad(format!(
                    "port {name:?}: unknown protocol {:?}",
                    port.protocol.as_deref().unwrap_or_default()
                )));
            };
            // A port without a number means "all ports": nothing kube-proxy proxies.
            let Some(number) = port.port else { continue };
            let Some(number) = port_number(number) else {
                return Err(bad(format!("port {name:?}: {number} is not a port number")));
            };
            let list = out.entry((name, proto)).or_default();
            for ep in &slice.endpoints {
                let Some(first) = ep.addresses.first() else {
                    continue;
                };
                let ip: IpAddr = first
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("endpoint address {first:?} is not an IP address")))?;
                if !family_ok(&ip) {
                    return Err(bad(format!(
                        "endpoint address {first} is not of addressType {}",
                        slice.address_type
                    )));
                }
                let cond = ep.conditions.clone().unwrap_or_default();
                // Both hint lists are in k8s-openapi's v1_33 types
                // (`forNodes` since API 1.33).
                let hints = ep.hints.as_ref();
                let zone_hint = Hint::of(
                    hints
                        .and_then(|h| h.for_zones.as_ref())
                        .into_iter()
                        .flatten()
                        .map(|z| z.name.as_str()),
                    zone,
                );
                let node_hint = Hint::of(
                    hints
                        .and_then(|h| h.for_nodes.as_ref())
                        .into_iter()
                        .flatten()
                        .map(|n| n.name.as_str()),
                    node_name,
                );
                let found = Endpoint {
                    addr: SocketAddr::new(ip, number),
                    ready: cond.ready.unwrap_or(true),
                    serving: cond.serving.unwrap_or(true),
                    terminating: cond.terminating.unwrap_or(false),
                    local: node_name.is_some() && ep.node_name.as_deref() == node_name,
                    zone_hint,
                    node_hint,
                };
                match list.iter_mut().find(|e| e.addr == found.addr) {
                    None => list.push(found),
                    Some(seen) if found.local => *seen = found,
                    Some(_) => {}
                }
            }
        }
    }
    Ok(out)
}

/// Whether kube-proxy would proxy this Service, and if not, why not.
fn skip_reason(svc: &core::Service) -> Option<&'static str> {
    if has_label(&svc.metadata, SERVICE_PROXY_NAME) {
        return Some("handed to another proxy");
    }
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return Some("ExternalName");
    }
    match spec.cluster_ip.as_deref() {
        Some("None") => Some("headless"),
        None | Some("") => Some("no ClusterIP"),
        Some(_) => None,
    }
}

/// Maps the objects of a dump to the desired IPVS table:
/// [`ipvs_table`] of their [`model`].
pub fn map(objects: &Objects, node: &Node) -> Mapped {
    let services: Vec<&core::Service> = objects.services.iter().collect();
    let slices: Vec<&discovery::EndpointSlice> = objects.slices.iter().collect();
    map_refs(services, &slices, node)
}

/// [`map`] of borrowed objects (a watch cache's, without copying them).
pub fn map_refs(
    services: Vec<&core::Service>,
    slices: &[&discovery::EndpointSlice],
    node: &Node,
) -> Mapped {
    ipvs_table(
        model(services, slices, node.name.as_deref(), node.zone.as_deref()),
        node,
    )
}

/// The [`Model`] of the objects: every port of every Service kube-proxy
/// would proxy, with its endpoints (`node_name` tells which are local
/// and, with `zone`, which topology hints are for this node), in the order of the Services by namespace and name; a Service that
/// cannot be used is a [`Problem`] and the rest are kept.
pub fn model(
    mut services: Vec<&core::Service>,
    slices: &[&discovery::EndpointSlice],
    node_name: Option<&str>,
    zone: Option<&str>,
) -> Model {
    let key = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        (
            m.namespace.clone().unwrap_or_else(|| "default".to_owned()),
            m.name.clone().unwrap_or_default(),
        )
    };
    // By namespace then name, borrowed: a key of owned strings would copy
    // two strings at every comparison.
    fn sort_key(s: &core::Service) -> (&str, &str) {
        (
            s.metadata.namespace.as_deref().unwrap_or("default"),
            s.metadata.name.as_deref().unwrap_or_default(),
        )
    }
    services.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    let mut slices_of: HashMap<(String, String), Vec<&discovery::EndpointSlice>> = HashMap::new();
    for &slice in slices {
        if has_label(&slice.metadata, SERVICE_PROXY_NAME) || has_label(&slice.metadata, HEADLESS) {
            continue;
        }
        let Some(owner) = labels(&slice.metadata).and_then(|l| l.get(SERVICE_NAME)) else {
            continue;
        };
        let ns = key(&slice.metadata).0;
        slices_of
            .entry((ns, owner.clone()))
            .or_default()
            .push(slice);
    }
    for list in slices_of.values_mut() {
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }

    let mut out = Model::default();
    for svc in services {
        let (ns, name) = key(&svc.metadata);
        let slices = slices_of.get(&(ns, name));
        let one = service_model(svc, slices.map_or(&[][..], |v| &v[..]), node_name, zone);
        out.warnings.extend(one.warnings);
        match one.ports {
            Some(Ok(ports)) => out.ports.extend(ports),
            Some(Err(problem)) => out.problems.push(problem),
            None => {}
        }
    }
    out
}

/// The part of the [`Model`] one Service gives (see [`service_model`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceModel {
    /// Its ports (`None`: skipped as kube-proxy skips it, no problem;
    /// `Err`: it cannot be served).
    pub ports: Option<Result<Vec<ServicePort>, Problem>>,
    /// The notes it gave, in order.
    pub warnings: Vec<String>,
}

/// The ports of one Service from its EndpointSlices (those labelled with
/// its name, in name order; see [`model`], which is this for each
/// Service in turn): what [`model`] gives for it alone.
pub fn service_model(
    svc: &core::Service,
    slices: &[&discovery::EndpointSlice],
    node_name: Option<&str>,
    zone: Option<&str>,
) -> ServiceModel {
    let mut warnings = Vec::new();
    if skip_reason(svc).is_some() {
        return ServiceModel {
            ports: None,
            warnings,
        };
    }
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let problem = |kind| Problem {
        service: format!("{ns}/{name}"),
        kind,
    };
    let ports = match svc.spec.as_ref() {
        None => Err(problem(ProblemKind::NoSpec)),
        Some(spec) => endpoints_by_port(slices, node_name, zone)
            .and_then(|eps| service_ports(svc, spec, (ns, name), &eps, &mut warnings))
            .map(|mut ports| {
                // Kept as long as the Service is (the live loop's
                // mapping): no room for more ports than it has.
                ports.shrink_to_fit();
                ports
            })
            .map_err(problem),
    };
    ServiceModel {
        ports: Some(ports),
        warnings,
    }
}

/// The ports of one Service.
fn service_ports(
    svc: &core::Service,
    spec: &core::ServiceSpec,
    (ns, name): (&str, &str),
    eps: &HashMap<(String, Protocol), Vec<Endpoint>>,
    warnings: &mut Vec<String>,
) -> Result<Vec<ServicePort>, ProblemKind> {
    let object = &format!("Service {ns}/{name}");
    let cluster_ips: Vec<IpAddr> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        _ => spec.cluster_ip.iter().map(|s| s.as_str()).collect(),
    }
    .into_iter()
    .filter(|s| *s != "None" && !s.is_empty())
    .map(|s| parse_ip(s, "ClusterIP"))
    .collect::<Result<_, _>>()?;
    let external_ips: Vec<IpAddr> = spec
        .external_ips
        .iter()
        .flatten()
        .map(|s| parse_ip(s, "externalIP"))
        .collect::<Result<_, _>>()?;
    let mut lb_ips = Vec::new();
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref());
    for ing in ingress.into_iter().flatten() {
        let Some(ip) = ing.ip.as_deref().filter(|ip| !ip.is_empty()) else {
            continue; // a hostname-only ingress
        };
        if ing.ip_mode.as_deref() == Some("Proxy") {
            continue;
        }
        lb_ips.push(parse_ip(ip, "load-balancer ingress IP")?);
    }
    let source_ranges: Vec<Cidr> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .map(|s| {
            s.parse()
                .map_err(|_| ProblemKind::BadSourceRange(s.clone()))
        })
        .collect::<Result<_, _>>()?;
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    let node_ports_wanted = match type_ {
        "NodePort" => true,
        "LoadBalancer" => spec.allocate_load_balancer_node_ports != Some(false),
        _ => false,
    };
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let health_check_node_port = match spec.health_check_node_port {
        Some(p) if external_local && type_ == "LoadBalancer" && p != 0 => {
            Some(port_number(p).ok_or(ProblemKind::BadPort {
                field: "healthCheckNodePort",
                value: p,
            })?)
        }
        _ => None,
    };
    let affinity_timeout = match spec.session_affinity.as_deref() {
        None | Some("None") | Some("") => None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match timeout {
                None => Some(DEFAULT_AFFINITY_TIMEOUT),
                Some(t) if (1..=86400).contains(&t) => Some(t as u32),
                Some(t) => {
                    return Err(ProblemKind::BadAffinity(format!(
                        "sessionAffinityConfig.clientIP.timeoutSeconds {t} is not within 1 to 86400"
                    )))
                }
            }
        }
        Some(other) => {
            return Err(ProblemKind::BadAffinity(format!(
                "unknown sessionAffinity {other:?}"
            )))
        }
    };

    let scheduling = scheduling(svc.metadata.annotations.as_ref(), object, warnings);
    let cluster_ips = usable_ips(cluster_ips, "ClusterIP", object, warnings);
    let external_ips = usable_ips(external_ips, "externalIP", object, warnings);
    let lb_ips = usable_ips(lb_ips, "load-balancer ingress IP", object, warnings);
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let port_name = port.name.clone().unwrap_or_default();
        let Some(protocol) = Protocol::from_k8s(port.protocol.as_deref()) else {
            return Err(ProblemKind::UnknownProtocol {
                port: port.port.to_string(),
                protocol: port.protocol.clone().unwrap_or_default(),
            });
        };
        let Some(number) = port_number(port.port) else {
            return Err(ProblemKind::BadPort {
                field: "port",
                value: port.port,
            });
        };
        let node_port = match port.node_port {
            Some(p) if node_ports_wanted && p != 0 => {
                Some(port_number(p).ok_or(ProblemKind::BadPort {
                    field: "nodePort",
                    value: p,
                })?)
            }
            _ => None,
        };
        let origin = if port_name.is_empty() {
            format!("{ns}/{name}:{number}")
        } else {
            format!("{ns}/{name}:{port_name}")
        };
        let endpoints = eps
            .get(&(port_name.clone(), protocol))
            .cloned()
            .unwrap_or_default();
        out.push(ServicePort {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            origin,
            protocol,
            port: number,
            node_port,
            cluster_ips: cluster_ips.clone(),
            external_ips: external_ips.clone(),
            lb_ips: lb_ips.clone(),
            source_ranges: source_ranges.clone(),
            internal_local,
            external_local,
            health_check_node_port,
            affinity_timeout,
            scheduling: scheduling.clone(),
            endpoints,
            fwmark: None,
        });
    }
    Ok(out)
}

/// The IPVS protocol of a Service port's.
pub fn ipvs_protocol(p: Protocol) -> ipvs_netlink::Protocol {
    match p {
        Protocol::Tcp => ipvs_netlink::Protocol::Tcp,
        Protocol::Udp => ipvs_netlink::Protocol::Udp,
        Protocol::Sctp => ipvs_netlink::Protocol::Sctp,
    }
}

/// The desired IPVS table of a [`Model`], as kube-proxy's IPVS proxier
/// builds it: for each port, a virtual service on each ClusterIP, each
/// external IP and load-balancer IP of the same family, and each node
/// address of the same family on the NodePort; masquerading real servers
/// of weight 1, chosen by the traffic policies. A virtual service two
/// Services want goes to the first (a warning says so). The model's
/// problems and warnings are carried over.
pub fn ipvs_table(model: Model, node: &Node) -> Mapped {
    let mut out = Mapped {
        warnings: model.warnings,
        problems: model.problems,
        ..Mapped::default()
    };
    let mut taken = HashMap::new();
    for port in &model.ports {
        for vs in port_servers(port, node) {
            keep_first(&mut out, &mut taken, vs);
        }
    }
    out.ports = model.ports;
    out.node_ips = node.ips.clone();
    out
}

/// Adds `vs` to the desired table of `out` unless a Service before it
/// (in `taken`, the origin of each virtual service so far) wants it too:
/// a warning then, unless it is the same Service port's.
fn keep_first(out: &mut Mapped, taken: &mut HashMap<ServiceId, String>, vs: Desired) {
    let id = vs.server.service.id;
    if let Some(first) = taken.get(&id) {
        if *first != vs.origin {
            out.warnings.push(format!(
                "{id} is wanted by {first} and by {}: kept {first}",
                vs.origin
            ));
        }
        // Else e.g. an externalIP that is also the LB's IP.
        return;
    }
    taken.insert(id, vs.origin.clone());
    out.desired.push(vs);
}

/// The virtual service `id` of `port` with real servers `dests`: the
/// Service's scheduling (its annotations, else the node's `-s`, with mh
/// kube-proxy's IP_VS_SVC_F_SCHED_MH_PORT) and persistence.
fn port_server(
    port: &ServicePort,
    scheduler: &str,
    id: ServiceId,
    dests: &[SocketAddr],
    bound: bool,
) -> Desired {
    let (scheduler, flags) = match &port.scheduling {
        Some(s) => (s.scheduler.clone(), s.flags),
        None => (scheduler.to_owned(), scheduling::default_flags(scheduler)),
    };
    let mut service = Service::new(id, scheduler);
    if let Some(timeout) = port.affinity_timeout {
        service = service.persistent(timeout);
    }
    for (on, flag) in flags.into_iter().zip([
        ServiceFlags::SCHED1,
        ServiceFlags::SCHED2,
        ServiceFlags::SCHED3,
    ]) {
        if on {
            service.flags |= flag;
        }
    }
    let mut dests: Vec<Destination> = dests.iter().map(|a| Destination::new(*a)).collect();
    dests.sort_by_key(|d| d.socket_addr());
    Desired {
        server: VirtualServer { service, dests },
        origin: port.origin.clone(),
        bound,
    }
}

/// The virtual services of one Service port.
fn port_servers(port: &ServicePort, node: &Node) -> Vec<Desired> {
    let proto = ipvs_protocol(port.protocol);
    let mut out = Vec::new();
    for &cluster_ip in &port.cluster_ips {
        let v4 = cluster_ip.is_ipv4();
        let internal = port.internal_endpoints(v4);
        let external = port.external_endpoints(v4);
        let same_family = |ip: &&IpAddr| ip.is_ipv4() == v4;
        let mut add = |vip: IpAddr, vport: u16, dests: &[SocketAddr], bound: bool| {
            let id = ServiceId::inet(proto, SocketAddr::new(vip, vport));
            out.push(port_server(port, &node.scheduler, id, dests, bound));
        };
        add(cluster_ip, port.port, &internal, true);
        for ip in port.external_ips.iter().filter(same_family) {
            add(*ip, port.port, &external, true);
        }
        for ip in port.lb_ips.iter().filter(same_family) {
            add(*ip, port.port, &external, true);
        }
        if let Some(np) = port.node_port {
            for ip in node.ips.iter().filter(same_family) {
                add(*ip, np, &external, false);
            }
        }
    }
    out
}

/// The range of firewall marks the in-cluster traffic of
/// `externalTrafficPolicy: Local` Service ports is given
/// (`--fwmark-range FIRST-LAST`): IPVS compares a packet's whole mark
/// with a firewall-mark service's, so the range must hold marks no other
/// tool on the node sets. The default, `0x1000-0x3fff`, is below the
/// masquerade bit `0x4000` (and kube-proxy's drop bit `0x8000`) and
/// outside Calico's default mark mask (`0xffff0000`); marks with the
/// masquerade bit are never given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwmarkRange {
    /// The first mark (at least 1).
    pub first: u32,
    /// The last mark.
    pub last: u32,
}

impl Default for FwmarkRange {
    fn default() -> Self {
        FwmarkRange {
            first: 0x1000,
            last: 0x3fff,
        }
    }
}

impl std::fmt::Display for FwmarkRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}-{:#x}", self.first, self.last)
    }
}

impl std::str::FromStr for FwmarkRange {
    type Err = String;

    /// `FIRST-LAST`, each decimal or `0x` hexadecimal, `0 < FIRST <= LAST`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a range of firewall marks (FIRST-LAST, such as 0x1000-0x3fff; 0 < FIRST <= LAST)"
            )
        };
        let number = |t: &str| match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) if !hex.is_empty() => u32::from_str_radix(hex, 16).ok(),
            Some(_) => None,
            None if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t.parse().ok(),
            None => None,
        };
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let (first, last) = (number(a).ok_or_else(bad)?, number(b).ok_or_else(bad)?);
        if first == 0 || first > last {
            return Err(bad());
        }
        let range = FwmarkRange { first, last };
        if range.marks().next().is_none() {
            return Err(format!(
                "{text:?}: every mark in it has the masquerade bit {:#x}",
                crate::model::MASQ_MARK
            ));
        }
        Ok(range)
    }
}

impl FwmarkRange {
    /// The marks that may be given, in order: those of the range without
    /// the masquerade bit.
    pub fn marks(self) -> impl Iterator<Item = u32> {
        (self.first..=self.last).filter(|m| m & crate::model::MASQ_MARK == 0)
    }

    /// Whether `mark` may be given.
    pub fn holds(self, mark: u32) -> bool {
        (self.first..=self.last).contains(&mark) && mark & crate::model::MASQ_MARK == 0
    }
}

/// Gives each `externalTrafficPolicy: Local` Service port of `mapped`
/// with load-balancer or external IPs or a NodePort
/// ([`ServicePort::wants_fwmark`]) a firewall mark of `range` and a
/// firewall-mark virtual service per family on it, holding the port's
/// Cluster endpoints ([`ServicePort::cluster_endpoints`]): in-cluster
/// traffic to those addresses and the NodePort (pods in
/// `--cluster-cidr`, the node itself), which the
/// packet path marks, reaches every ready endpoint, as kube-proxy's
/// nftables mode sends it (kubernetes#93456, #71596), while traffic from
/// outside keeps the Local virtual services. A port keeps the mark
/// `previous` gives it (the state file's, [`crate::ownership::StateFile::fwmarks`])
/// while it is in the range and no port before it took it; the others
/// get the lowest free mark. A port left without one (the range is
/// used up) is warned about: its in-cluster traffic then gets the Local
/// endpoints only.
pub fn assign_fwmarks(
    mapped: &mut Mapped,
    previous: &BTreeMap<String, u32>,
    range: FwmarkRange,
    scheduler: &str,
) {
    let mut used: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
    let mut by_origin: BTreeMap<&str, u32> = BTreeMap::new();
    // Kept marks first, so that a new port never takes one a port keeps.
    for port in mapped.ports.iter().filter(|p| p.wants_fwmark()) {
        if let Some(&mark) = previous.get(&port.origin) {
            if range.holds(mark)
                && !by_origin.contains_key(port.origin.as_str())
                && used.insert(mark)
            {
                by_origin.insert(&port.origin, mark);
            }
        }
    }
    let mut free = range.marks().filter(|m| !used.contains(m));
    let mut given: BTreeMap<String, u32> = BTreeMap::new();
    let mut short = Vec::new();
    for port in mapped.ports.iter().filter(|p| p.wants_fwmark()) {
        let mark = match by_origin.get(port.origin.as_str()) {
            Some(m) => Some(*m),
            None => {
                let next = given.get(&port.origin).copied().or_else(|| free.next());
                if next.is_none() {
                    short.push(port.origin.clone());
                }
                next
            }
        };
        if let Some(mark) = mark {
            given.insert(port.origin.clone(), mark);
        }
    }
    // The ports' own virtual services are of addresses, never of marks:
    // only a mark's service can be in the way of one.
    let mut taken: HashMap<ServiceId, String> = mapped
        .desired
        .iter()
        .filter(|d| matches!(d.server.service.id, ServiceId::Fwmark { .. }))
        .map(|d| (d.server.service.id, d.origin.clone()))
        .collect();
    let mut extra = Vec::new();
    for port in &mut mapped.ports {
        port.fwmark = port
            .wants_fwmark()
            .then(|| given.get(&port.origin).copied())
            .flatten();
        let Some(mark) = port.fwmark else { continue };
        for v4 in [true, false] {
            // A NodePort is served on the node addresses of every family
            // with a ClusterIP.
            let family_served = port.cluster_ips.iter().any(|c| c.is_ipv4() == v4)
                && (port.node_port.is_some()
                    || port
                        .lb_ips
                        .iter()
                        .chain(&port.external_ips)
                        .any(|ip| ip.is_ipv4() == v4));
            if !family_served {
                continue;
            }
            let family = if v4 {
                ipvs_netlink::AddressFamily::Inet
            } else {
                ipvs_netlink::AddressFamily::Inet6
            };
            let id = ServiceId::fwmark(family, mark);
            extra.push(port_server(
                port,
                scheduler,
                id,
                &port.cluster_endpoints(v4),
                false,
            ));
        }
    }
    let mut out = Mapped::default();
    for vs in extra {
        keep_first(&mut out, &mut taken, vs);
    }
    mapped.desired.extend(out.desired);
    mapped.warnings.extend(out.warnings);
    for origin in short {
        mapped.warnings.push(format!(
            "{origin}: no firewall mark left in {range} (--fwmark-range): its in-cluster traffic to its load-balancer and external IPs and NodePort gets this node's endpoints only"
        ));
    }
}

#[cfg(test)]
mod tests;
