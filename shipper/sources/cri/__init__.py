"""The CRI source (Kubernetes on containerd or CRI-O): pods' containers found through the CRI
API and the pod log directory (`discovery`), each followed by one task (`follower`) that
reads its CRI log files across kubelet's rotation (`tail`). The CRI client, the log line
grammar and the pod log layout are in `shipper.cri`; what every source shares is in
`shipper.sources`."""
